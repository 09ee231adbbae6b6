import { acceptHMRUpdate, defineStore } from 'pinia'
import { ref, shallowRef } from 'vue'
import { parseTime } from '../lib/format'
import type { Action, Conn, ConnEvent, ConnectionsDelta } from '../lib/protocol'
import { useSocketStore } from './socket'

/** HISTORY_CAP is how many closed connections the UI keeps (the server's getHistory maximum). */
export const HISTORY_CAP = 1000
/** EVENT_FLUSH_MS batches opened/closed events so a burst costs one array copy, not one per event. */
export const EVENT_FLUSH_MS = 100
/** RECENTLY_CLOSED_MS is how long a closed id is kept out of snapshots that were taken before it closed. */
export const RECENTLY_CLOSED_MS = 10_000

/**
 * useConnectionsStore keeps the live connections and the recently closed ones.
 *
 * `live` is replaced as a whole by every `connections` snapshot, or by the list
 * a `connectionsDelta` message brings up to date (a shallowRef: no deep
 * reactivity over thousands of per-tick objects). Between snapshots,
 * events (`eventBatch` messages, or single `event` messages from a server
 * without batches) add opened connections and move closed ones to `closed`,
 * so a connection shorter than one push interval is still seen.
 *
 * Pausing freezes both lists; updates keep arriving and are counted in
 * `pending`, and resuming applies the latest state at once.
 */
export const useConnectionsStore = defineStore('connections', () => {
  const socket = useSocketStore()

  /** live is the list of live connections as last shown. */
  const live = shallowRef<readonly Conn[]>([])
  /** closed holds recently closed connections, newest first. */
  const closed = shallowRef<readonly Conn[]>([])
  /** paused freezes what is shown; pending counts the updates held back. */
  const paused = ref(false)
  const pending = ref(0)
  /** snapshotAt is when the shown live list was last replaced (epoch ms). */
  const snapshotAt = ref(0)

  // Events not yet applied (batched while live, held while paused).
  let queue: ConnEvent[] = []
  let flushTimer: ReturnType<typeof setTimeout> | null = null
  // While paused: closed events older than the held snapshot (history only),
  // the latest snapshot, and the events that came after it.
  let heldClosed: Conn[] = []
  let heldSnapshot: Conn[] | null = null
  // Ids closed lately: a snapshot taken just before a close may arrive after
  // the close event and must not bring the connection back.
  const recentlyClosed = new Map<number, number>()

  function onSnapshot(data: Conn[] | null): void {
    const list = Array.isArray(data) ? data : []
    if (paused.value) {
      pending.value++
      for (const ev of queue) if (ev.event === 'closed') heldClosed.push(ev.conn)
      queue = []
      heldSnapshot = list
      return
    }
    flush()
    applySnapshot(list)
  }

  // The server's live list as the connectionsDelta messages built it, by id
  // (ids only grow, so insertion order is id order, as in a full list).
  const current = new Map<number, Conn>()

  /**
   * onDelta applies a connectionsDelta message to the server's list and then
   * shows that list as a snapshot would be shown: a delta renders exactly
   * what the full list of the same moment would.
   */
  function onDelta(d: ConnectionsDelta | null): void {
    if (!d || typeof d !== 'object') return
    if (d.full) current.clear()
    if (Array.isArray(d.conns)) for (const c of d.conns) if (c && typeof c.id === 'number') current.set(c.id, c)
    if (Array.isArray(d.moved)) {
      for (const m of d.moved) {
        const c = m && current.get(m.id)
        if (!c) continue
        const next = { ...c }
        if (typeof m.up === 'number') next.up = m.up
        if (typeof m.down === 'number') next.down = m.down
        if (typeof m.upRate === 'number') next.upRate = m.upRate
        if (typeof m.downRate === 'number') next.downRate = m.downRate
        if (typeof m.status === 'number') next.status = m.status
        current.set(m.id, next)
      }
    }
    if (Array.isArray(d.removed)) for (const id of d.removed) current.delete(id)
    onSnapshot([...current.values()])
  }

  function applySnapshot(list: Conn[]): void {
    const now = Date.now()
    for (const [id, t] of recentlyClosed) if (now - t > RECENTLY_CLOSED_MS) recentlyClosed.delete(id)
    live.value = recentlyClosed.size ? list.filter((c) => !recentlyClosed.has(c.id)) : list
    snapshotAt.value = now
  }

  function onEvent(ev: ConnEvent): void {
    if (!ev || !ev.conn || typeof ev.conn.id !== 'number') return
    if (ev.event !== 'opened' && ev.event !== 'closed') return
    queue.push(ev)
    if (paused.value) {
      pending.value++
      return
    }
    if (flushTimer === null) flushTimer = setTimeout(flush, EVENT_FLUSH_MS)
  }

  /**
   * onEventBatch takes the server's batch (topic eventBatches): the events of
   * one interval, in order, applied at once as a burst of single events is.
   */
  function onEventBatch(batch: ConnEvent[] | null): void {
    if (!Array.isArray(batch)) return
    let n = 0
    for (const ev of batch) {
      if (!ev || !ev.conn || typeof ev.conn.id !== 'number') continue
      if (ev.event !== 'opened' && ev.event !== 'closed') continue
      queue.push(ev)
      n++
    }
    if (paused.value) {
      pending.value += n
      return
    }
    flush()
  }

  /** flush applies the queued events now (called by the batching timer, and by tests). */
  function flush(): void {
    if (flushTimer !== null) {
      clearTimeout(flushTimer)
      flushTimer = null
    }
    if (paused.value || queue.length === 0) return
    const events = queue
    queue = []
    applyEvents(events)
  }

  function applyEvents(events: ConnEvent[]): void {
    const now = Date.now()
    const byId = new Map<number, Conn>()
    for (const c of live.value) byId.set(c.id, c)
    const ended: Conn[] = []
    let changed = false
    for (const ev of events) {
      const c = ev.conn
      if (ev.event === 'opened') {
        if (!recentlyClosed.has(c.id) && !byId.has(c.id)) {
          byId.set(c.id, c)
          changed = true
        }
      } else {
        recentlyClosed.set(c.id, now)
        if (byId.delete(c.id)) changed = true
        ended.push(c)
      }
    }
    if (changed) live.value = [...byId.values()]
    if (ended.length) mergeClosed(ended)
  }

  /** mergeClosed adds closed entries (any order) to `closed`, newest first, deduplicated, capped. */
  function mergeClosed(entries: readonly Conn[]): void {
    const byId = new Map<number, Conn>()
    for (const c of closed.value) byId.set(c.id, c)
    for (const c of entries) if (c && typeof c.id === 'number') byId.set(c.id, c)
    const all = [...byId.values()]
    all.sort((a, b) => endTime(b) - endTime(a) || b.id - a.id)
    closed.value = all.length > HISTORY_CAP ? all.slice(0, HISTORY_CAP) : all
  }

  function setPaused(p: boolean): void {
    if (p === paused.value) return
    if (p) {
      flush()
      paused.value = true
      return
    }
    paused.value = false
    pending.value = 0
    if (heldClosed.length) {
      const now = Date.now()
      for (const c of heldClosed) recentlyClosed.set(c.id, now)
      mergeClosed(heldClosed)
      heldClosed = []
    }
    if (heldSnapshot) {
      applySnapshot(heldSnapshot)
      heldSnapshot = null
    }
    flush()
  }

  /** reset drops what belonged to the previous connection; closed history is fetched anew. */
  function reset(): void {
    if (flushTimer !== null) clearTimeout(flushTimer)
    flushTimer = null
    queue = []
    heldClosed = []
    heldSnapshot = null
    pending.value = 0
    current.clear()
    live.value = []
    snapshotAt.value = 0
  }

  /** loadHistory asks the server for its closed-connection ring and merges it in. */
  async function loadHistory(limit = HISTORY_CAP): Promise<void> {
    const msg = await socket.request({ action: 'getHistory', limit })
    if (msg.type === 'history') mergeClosed(Array.isArray(msg.data) ? msg.data : [])
  }

  /** find returns the connection with this id from the live list or the closed history. */
  function find(id: number): Conn | undefined {
    return live.value.find((c) => c.id === id) ?? heldSnapshot?.find((c) => c.id === id) ?? closed.value.find((c) => c.id === id)
  }

  /** lookup is find, falling back to the server's history (for a log line's connection). */
  async function lookup(id: number): Promise<Conn | undefined> {
    const c = find(id)
    if (c) return c
    try {
      await loadHistory()
    } catch {
      return undefined
    }
    return find(id)
  }

  async function closedCount(action: Action): Promise<number> {
    const msg = await socket.request(action)
    return msg.type === 'result' ? (msg.data?.closed ?? 0) : 0
  }

  /** closeOne closes one connection; it resolves with how many were closed (0 or 1). */
  function closeOne(id: number): Promise<number> {
    return closedCount({ action: 'closeConnection', id })
  }

  /**
   * closeIds closes the given connections (the filtered rows). Long lists are
   * split so that no frame exceeds the server's read limit.
   */
  async function closeIds(ids: readonly number[]): Promise<number> {
    if (ids.length === 0) return 0
    const budget = Math.max(1024, socket.maxMessageBytes() - 256)
    const batches: number[][] = []
    let batch: number[] = []
    let size = 64
    for (const id of ids) {
      const len = String(id).length + 1
      if (batch.length && size + len > budget) {
        batches.push(batch)
        batch = []
        size = 64
      }
      batch.push(id)
      size += len
    }
    if (batch.length) batches.push(batch)
    let total = 0
    for (const b of batches) total += await closedCount({ action: 'closeConnections', ids: b })
    return total
  }

  /** closeAll closes every live connection on the server. */
  function closeAll(): Promise<number> {
    return closedCount({ action: 'closeAllConnections' })
  }

  socket.on('connections', onSnapshot)
  socket.on('connectionsDelta', onDelta)
  socket.on('event', onEvent)
  socket.on('eventBatch', onEventBatch)
  socket.on('connected', () => {
    reset()
    loadHistory().catch(() => {
      // An old server without getHistory: closed events still fill the list.
    })
  })

  return {
    live,
    closed,
    paused,
    pending,
    snapshotAt,
    setPaused,
    flush,
    reset,
    mergeClosed,
    loadHistory,
    find,
    lookup,
    closeOne,
    closeIds,
    closeAll,
  }
})

function endTime(c: Conn): number {
  const t = parseTime(c.end)
  return Number.isNaN(t) ? 0 : t
}

if (import.meta.hot) import.meta.hot.accept(acceptHMRUpdate(useConnectionsStore, import.meta.hot))
