import type { Conn } from '../lib/protocol'

/**
 * forgetOlder deletes from `recentlyClosed` (id → when it closed, epoch ms)
 * the ids that closed more than ttl ms before now.
 */
export function forgetOlder(recentlyClosed: Map<number, number>, now: number, ttl: number): void {
  for (const [id, t] of recentlyClosed) if (now - t > ttl) recentlyClosed.delete(id)
}

/**
 * withoutClosed is a snapshot without the ids closed lately: a snapshot taken
 * just before a close may arrive after the close event and must not bring
 * the connection back. With none closed lately it is the snapshot itself.
 */
export function withoutClosed(list: readonly Conn[], recentlyClosed: ReadonlyMap<number, number>): readonly Conn[] {
  return recentlyClosed.size ? list.filter((c) => !recentlyClosed.has(c.id)) : list
}
