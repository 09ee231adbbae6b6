import { describe, expect, it } from 'vitest'
import { applyEvents, connEvents, isConnEvent } from '../../src/assembly/connEvents'
import type { ConnEvent } from '../../src/lib/protocol'
import { conn } from './conn'

const opened = (id: number): ConnEvent => ({ event: 'opened', conn: conn(id) })
const closed = (id: number): ConnEvent => ({ event: 'closed', conn: conn(id, { end: '2026-11-27T10:00:01Z' }) })

describe('connEvents', () => {
  it('keeps opened and closed events with an id, in order', () => {
    const bad = [null, { event: 'opened' }, { event: 'moved', conn: conn(3) }, { event: 'closed', conn: { id: '4' } }] as unknown as ConnEvent[]
    expect(connEvents([opened(1), ...bad, closed(2)])).toEqual([opened(1), closed(2)])
    expect(connEvents(null)).toEqual([])
    expect(isConnEvent(opened(1))).toBe(true)
    expect(isConnEvent(undefined)).toBe(false)
  })
})

describe('applyEvents', () => {
  it('adds opened connections and takes closed ones out, reporting them as ended', () => {
    const live = [conn(1), conn(2)]
    const r = applyEvents(live, [opened(3), closed(1)], new Map())
    expect(r.live.map((c) => c.id)).toEqual([2, 3])
    expect(r.ended.map((c) => c.id)).toEqual([1])
    expect(live.map((c) => c.id)).toEqual([1, 2])
  })

  it('returns the same array when the live list did not change', () => {
    const live = [conn(1)]
    const r = applyEvents(live, [opened(1), closed(5)], new Map())
    expect(r.live).toBe(live)
    expect(r.ended.map((c) => c.id)).toEqual([5])
  })

  it('keeps a connection closed lately, or earlier in the same run, out of the list', () => {
    const recently = new Map([[7, 0]])
    const r = applyEvents([], [opened(7), closed(8), opened(8), opened(9)], recently)
    expect(r.live.map((c) => c.id)).toEqual([9])
    expect(recently.size).toBe(1)
  })

  it('gives the same list for a run of events as for the events one by one', () => {
    const events = [opened(1), opened(2), closed(1), opened(3), closed(3), opened(4)]
    const recently = new Map<number, number>()
    let live = applyEvents([], events, new Map()).live
    const together = live.map((c) => c.id)
    live = []
    for (const ev of events) {
      const r = applyEvents(live, [ev], recently)
      for (const c of r.ended) recently.set(c.id, 0)
      live = r.live
    }
    expect(live.map((c) => c.id)).toEqual(together)
    expect(together).toEqual([2, 4])
  })
})
