import { describe, expect, it } from 'vitest'
import { splitIds } from '../../src/api/batches'

describe('splitIds', () => {
  it('keeps every id, in order, in lists whose frames stay within the budget', () => {
    const ids = Array.from({ length: 5000 }, (_, i) => i + 1)
    const batches = splitIds(ids, 1024)
    expect(batches.length).toBeGreaterThan(1)
    expect(batches.flat()).toEqual(ids)
    for (const b of batches) expect(JSON.stringify({ action: 'closeConnections', ids: b, ref: 'r123' }).length).toBeLessThanOrEqual(1024)
  })

  it('gives one list for a short one and none for none', () => {
    expect(splitIds([3, 1, 2], 1024)).toEqual([[3, 1, 2]])
    expect(splitIds([], 1024)).toEqual([])
  })
})
