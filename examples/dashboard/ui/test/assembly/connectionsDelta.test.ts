import { describe, expect, it } from 'vitest'
import { applyDelta } from '../../src/assembly/connectionsDelta'
import type { Conn, ConnectionsDelta } from '../../src/lib/protocol'
import { conn } from './conn'

function delta(d: Partial<ConnectionsDelta>): ConnectionsDelta {
  return { full: false, conns: [], moved: [], removed: [], ...d }
}

describe('applyDelta', () => {
  it('starts from a full list, then adds, moves and removes, in id order', () => {
    const list = new Map<number, Conn>()
    expect(applyDelta(list, delta({ full: true, conns: [conn(1), conn(2), conn(3)] }))).toBe(true)
    applyDelta(list, delta({ conns: [conn(4)], moved: [{ id: 2, down: 999, downRate: 5 }], removed: [1] }))
    expect([...list.keys()]).toEqual([2, 3, 4])
    expect(list.get(2)).toMatchObject({ id: 2, up: 2, down: 999, downRate: 5 })
  })

  it('replaces the whole list on a full delta', () => {
    const list = new Map<number, Conn>([[7, conn(7)]])
    applyDelta(list, delta({ full: true, conns: [conn(8)] }))
    expect([...list.keys()]).toEqual([8])
  })

  it('copies a moved entry rather than changing the object a snapshot showed', () => {
    const first = conn(1)
    const list = new Map<number, Conn>([[1, first]])
    applyDelta(list, delta({ moved: [{ id: 1, up: 50, status: 200 }] }))
    expect(first.up).toBe(1)
    expect(list.get(1)).not.toBe(first)
    expect(list.get(1)).toMatchObject({ up: 50, status: 200, down: 10 })
  })

  it('ignores moved entries for unknown ids, fields that are not numbers, and malformed entries', () => {
    const list = new Map<number, Conn>([[1, conn(1)]])
    const d = delta({
      conns: [null as unknown as Conn, { id: 'x' } as unknown as Conn],
      moved: [{ id: 9, up: 1 }, null as never, { id: 1, up: 'many' as unknown as number }],
      removed: [42],
    })
    applyDelta(list, d)
    expect([...list.keys()]).toEqual([1])
    expect(list.get(1)?.up).toBe(1)
  })

  it('reports a null delta and leaves the list alone; null arrays are empty', () => {
    const list = new Map<number, Conn>([[1, conn(1)]])
    expect(applyDelta(list, null)).toBe(false)
    expect(applyDelta(list, { full: false, conns: null, moved: null, removed: null } as unknown as ConnectionsDelta)).toBe(true)
    expect([...list.keys()]).toEqual([1])
  })
})
