import { describe, expect, it } from 'vitest'
import { forgetOlder, withoutClosed } from '../../src/assembly/recentlyClosed'
import { conn } from './conn'

describe('recently closed', () => {
  it('forgets ids closed longer ago than the ttl', () => {
    const m = new Map([
      [1, 1000],
      [2, 5000],
    ])
    forgetOlder(m, 11_500, 10_000)
    expect([...m.keys()]).toEqual([2])
  })

  it('keeps ids closed lately out of a snapshot, and returns the snapshot itself when there are none', () => {
    const list = [conn(1), conn(2), conn(3)]
    expect(withoutClosed(list, new Map([[2, 0]])).map((c) => c.id)).toEqual([1, 3])
    expect(withoutClosed(list, new Map())).toBe(list)
  })
})
