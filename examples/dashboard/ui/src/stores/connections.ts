import { acceptHMRUpdate, defineStore } from 'pinia'
import { ref, shallowRef } from 'vue'
import { splitIds } from '../api/batches'
import { mergeClosed as merge } from '../assembly/closedHistory'
import { applyEvents as applied, connEvents, isConnEvent } from '../assembly/connEvents'
import { applyDelta } from '../assembly/connectionsDelta'
import { forgetOlder, withoutClosed } from '../assembly/recentlyClosed'
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

  // The server's live list as the connectionsDelta messages built it, by id.
  const current = new Map<number, Conn>()

  /**
   * onDelta applies a connectionsDelta message to the server's list and then
   * shows that list as a snapshot would be shown: a delta renders exactly
   * what the full list of the same moment would.
   */
  function onDelta(d: ConnectionsDelta | null): void {
    if (applyDelta(current, d)) onSnapshot([...current.values()])
  }

  function applySnapshot(list: Conn[]): void {
    const now = Date.now()
    forgetOlder(recentlyClosed, now, RECENTLY_CLOSED_MS)
    live.value = withoutClosed(list, recentlyClosed)
    snapshotAt.value = now
  }

  function onEvent(ev: ConnEvent): void {
    if (!isConnEvent(ev)) return
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
    const events = connEvents(batch)
    for (const ev of events) queue.push(ev)
    if (paused.value) {
      pending.value += events.length
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
    const r = applied(live.value, events, recentlyClosed)
    for (const c of r.ended) recentlyClosed.set(c.id, now)
    if (r.live !== live.value) live.value = r.live
    if (r.ended.length) mergeClosed(r.ended)
  }

  /** mergeClosed adds closed entries (any order) to `closed`, newest first, deduplicated, capped. */
  function mergeClosed(entries: readonly Conn[]): void {
    closed.value = merge(closed.value, entries, HISTORY_CAP)
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
    let total = 0
    for (const b of splitIds(ids, budget)) total += await closedCount({ action: 'closeConnections', ids: b })
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

if (import.meta.hot) import.meta.hot.accept(acceptHMRUpdate(useConnectionsStore, import.meta.hot))
