import type { Conn, ConnEvent } from '../lib/protocol'

/** isConnEvent tells an opened or closed event with a connection id from anything else. */
export function isConnEvent(ev: ConnEvent | null | undefined): ev is ConnEvent {
  if (!ev || !ev.conn || typeof ev.conn.id !== 'number') return false
  return ev.event === 'opened' || ev.event === 'closed'
}

/** connEvents keeps the well-formed events of a batch (topic eventBatches), in order; a batch that is not an array has none. */
export function connEvents(batch: readonly (ConnEvent | null)[] | null): ConnEvent[] {
  if (!Array.isArray(batch)) return []
  return batch.filter(isConnEvent)
}

/** Applied is what a run of events did to the live list. */
export interface Applied {
  /** live is the new live list, or the same array when nothing in it changed. */
  readonly live: readonly Conn[]
  /** ended are the connections that closed, in event order. */
  readonly ended: Conn[]
}

/**
 * applyEvents applies opened and closed events, in order, to the live list:
 * an opened connection is added unless it is listed already or closed lately
 * (in `recentlyClosed` or earlier in these events); a closed one leaves the
 * list and is reported as ended. It changes neither argument.
 */
export function applyEvents(live: readonly Conn[], events: readonly ConnEvent[], recentlyClosed: ReadonlyMap<number, number>): Applied {
  const byId = new Map<number, Conn>()
  for (const c of live) byId.set(c.id, c)
  const closedHere = new Set<number>()
  const ended: Conn[] = []
  let changed = false
  for (const ev of events) {
    const c = ev.conn
    if (ev.event === 'opened') {
      if (!recentlyClosed.has(c.id) && !closedHere.has(c.id) && !byId.has(c.id)) {
        byId.set(c.id, c)
        changed = true
      }
    } else {
      closedHere.add(c.id)
      if (byId.delete(c.id)) changed = true
      ended.push(c)
    }
  }
  return { live: changed ? [...byId.values()] : live, ended }
}
