import { parseTime } from '../lib/format'
import type { Conn } from '../lib/protocol'

/**
 * mergeClosed adds closed entries (any order) to the closed list: the result
 * is newest first (by end time, then id), one entry per id (a later entry
 * wins), at most `cap` long. It returns a new array and changes neither argument.
 */
export function mergeClosed(closed: readonly Conn[], entries: readonly Conn[], cap: number): readonly Conn[] {
  const byId = new Map<number, Conn>()
  for (const c of closed) byId.set(c.id, c)
  for (const c of entries) if (c && typeof c.id === 'number') byId.set(c.id, c)
  const all = [...byId.values()]
  all.sort((a, b) => endTime(b) - endTime(a) || b.id - a.id)
  return all.length > cap ? all.slice(0, cap) : all
}

/** endTime is when a closed connection ended (epoch ms), 0 when it does not say. */
export function endTime(c: Conn): number {
  const t = parseTime(c.end)
  return Number.isNaN(t) ? 0 : t
}
