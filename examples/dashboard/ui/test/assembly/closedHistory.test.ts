import { describe, expect, it } from 'vitest'
import { endTime, mergeClosed } from '../../src/assembly/closedHistory'
import { conn } from './conn'

describe('mergeClosed', () => {
  it('lists newest first by end time, then by id, one entry per id, the later entry winning', () => {
    const old = [conn(1, { end: '2026-11-27T10:00:01Z' }), conn(2, { end: '2026-11-27T10:00:03Z' })]
    const merged = mergeClosed(old, [conn(3, { end: '2026-11-27T10:00:02Z' }), conn(1, { end: '2026-11-27T10:00:04Z', endReason: 'closed' })], 10)
    expect(merged.map((c) => c.id)).toEqual([1, 2, 3])
    expect(merged[0].endReason).toBe('closed')
    expect(old.map((c) => c.id)).toEqual([1, 2])
    // Without end times, the higher id is newer.
    expect(mergeClosed([], [conn(4), conn(6), conn(5)], 10).map((c) => c.id)).toEqual([6, 5, 4])
  })

  it('keeps at most cap entries, dropping the oldest, and skips malformed ones', () => {
    const entries = [1, 2, 3, 4].map((id) => conn(id, { end: `2026-11-27T10:00:0${id}Z` }))
    const merged = mergeClosed([], [...entries, null as never], 3)
    expect(merged.map((c) => c.id)).toEqual([4, 3, 2])
  })

  it('reads an end time that is absent or garbled as 0', () => {
    expect(endTime(conn(1))).toBe(0)
    expect(endTime(conn(1, { end: 'soon' }))).toBe(0)
    expect(endTime(conn(1, { end: '1970-01-01T00:00:01Z' }))).toBe(1000)
  })
})
