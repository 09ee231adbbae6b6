/** FRAME_OVERHEAD is what a closeConnections frame costs besides its ids, in bytes, with room to spare. */
const FRAME_OVERHEAD = 64

/**
 * splitIds splits a list of ids into lists whose closeConnections frames
 * each stay within budget bytes (an id costs its digits and a comma), so
 * that no frame exceeds the server's read limit. Order is kept.
 */
export function splitIds(ids: readonly number[], budget: number): number[][] {
  const batches: number[][] = []
  let batch: number[] = []
  let size = FRAME_OVERHEAD
  for (const id of ids) {
    const len = String(id).length + 1
    if (batch.length && size + len > budget) {
      batches.push(batch)
      batch = []
      size = FRAME_OVERHEAD
    }
    batch.push(id)
    size += len
  }
  if (batch.length) batches.push(batch)
  return batches
}
