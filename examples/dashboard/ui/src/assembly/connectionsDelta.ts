import type { Conn, ConnectionsDelta } from '../lib/protocol'

/**
 * applyDelta brings `list`, the server's live list by id, up to date with one
 * connectionsDelta message: a full list replaces it, new entries are added,
 * moved counters are copied onto a new object for that id (the old one is
 * not changed), and removed ids are deleted. Ids only grow, so insertion
 * order is id order, as in a full list. It reports whether d was a delta at all.
 *
 * The map is updated in place: copying thousands of entries on every tick is
 * what the delta form exists to avoid.
 */
export function applyDelta(list: Map<number, Conn>, d: ConnectionsDelta | null): boolean {
  if (!d || typeof d !== 'object') return false
  if (d.full) list.clear()
  if (Array.isArray(d.conns)) for (const c of d.conns) if (c && typeof c.id === 'number') list.set(c.id, c)
  if (Array.isArray(d.moved)) {
    for (const m of d.moved) {
      const c = m && list.get(m.id)
      if (!c) continue
      const next = { ...c }
      if (typeof m.up === 'number') next.up = m.up
      if (typeof m.down === 'number') next.down = m.down
      if (typeof m.upRate === 'number') next.upRate = m.upRate
      if (typeof m.downRate === 'number') next.downRate = m.downRate
      if (typeof m.status === 'number') next.status = m.status
      list.set(m.id, next)
    }
  }
  if (Array.isArray(d.removed)) for (const id of d.removed) list.delete(id)
  return true
}
