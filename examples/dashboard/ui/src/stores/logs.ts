import { acceptHMRUpdate, defineStore } from 'pinia'
import { computed, ref, shallowRef } from 'vue'
import { parseTime } from '../lib/format'
import { LEVELS, normalizeLevel, type Level, type LogRecord } from '../lib/protocol'
import { useSocketStore } from './socket'

/** LOG_CAP is how many lines the view keeps; older ones are dropped first. */
export const LOG_CAP = 5000
/** LOG_FLUSH_MS batches incoming records: a burst of lines costs one array copy. */
export const LOG_FLUSH_MS = 100

/** LogLine is one row of the log view: a record, or a notice that records were lost. */
export type LogLine =
  | {
      readonly kind: 'log'
      readonly key: number
      readonly seq: number
      readonly time: number
      readonly level: Level
      readonly message: string
      readonly session: number
      readonly conn: number
      readonly source: string
    }
  | { readonly kind: 'dropped'; readonly key: number; readonly time: number; readonly count: number }

/**
 * useLogsStore keeps the log lines the server pushes. The level filter is
 * applied on the server (changing it re-subscribes); the text search is the
 * view's business. Records arrive one per frame and are appended in batches;
 * `lines` is replaced as a whole and never holds more than `cap` entries.
 */
export const useLogsStore = defineStore('logs', () => {
  const socket = useSocketStore()

  /** lines are the rows shown, oldest first. */
  const lines = shallowRef<readonly LogLine[]>([])
  /** paused stops appending; pending counts lines held back meanwhile. */
  const paused = ref(false)
  const pending = ref(0)
  /** cap bounds `lines` (and the held-back buffer). */
  const cap = ref(LOG_CAP)
  /** trimmed counts lines dropped from the front because of the cap, since the last clear. */
  const trimmed = ref(0)
  /** level is the server-side filter in force. */
  const level = computed<Level>(() => socket.logLevel)

  let buffer: LogLine[] = []
  let flushTimer: ReturnType<typeof setTimeout> | null = null
  let nextKey = 1
  // Seqs of lines held (shown or buffered): a safety net against a record
  // delivered twice around a re-subscription.
  const seen = new Set<number>()

  function onLog(r: LogRecord): void {
    if (!r || typeof r.message !== 'string') return
    const lvl = normalizeLevel(r.level)
    // Records sent before a level change reached the server may still arrive.
    if (LEVELS.indexOf(lvl) < LEVELS.indexOf(socket.logLevel)) return
    const seq = typeof r.seq === 'number' ? r.seq : 0
    if (seq > 0) {
      if (seen.has(seq)) return
      seen.add(seq)
    }
    const t = parseTime(r.time)
    push({
      kind: 'log',
      key: nextKey++,
      seq,
      time: Number.isNaN(t) ? Date.now() : t,
      level: lvl,
      message: r.message,
      session: r.session ?? 0,
      conn: r.conn ?? 0,
      source: r.source ?? '',
    })
  }

  function onDropped(d: { count: number }): void {
    const count = Number(d?.count) || 0
    if (count <= 0) return
    push({ kind: 'dropped', key: nextKey++, time: Date.now(), count })
  }

  function push(line: LogLine): void {
    buffer.push(line)
    if (buffer.length > cap.value) {
      const gone = buffer.splice(0, buffer.length - cap.value)
      forget(gone)
      trimmed.value += gone.length
    }
    if (paused.value) {
      pending.value++
      return
    }
    if (flushTimer === null) flushTimer = setTimeout(flush, LOG_FLUSH_MS)
  }

  /** flush appends buffered lines now (called by the batching timer, and by tests). */
  function flush(): void {
    if (flushTimer !== null) {
      clearTimeout(flushTimer)
      flushTimer = null
    }
    if (paused.value || buffer.length === 0) return
    const next = lines.value.concat(buffer)
    buffer = []
    if (next.length > cap.value) {
      const gone = next.splice(0, next.length - cap.value)
      forget(gone)
      trimmed.value += gone.length
    }
    lines.value = next
  }

  function forget(gone: readonly LogLine[]): void {
    for (const l of gone) if (l.kind === 'log' && l.seq > 0) seen.delete(l.seq)
  }

  function setPaused(p: boolean): void {
    if (p === paused.value) return
    paused.value = p
    if (!p) {
      pending.value = 0
      flush()
    }
  }

  /** clear empties the view; the server's cursor is kept, so cleared lines do not come back. */
  function clear(): void {
    if (flushTimer !== null) clearTimeout(flushTimer)
    flushTimer = null
    lines.value = []
    buffer = []
    seen.clear()
    pending.value = 0
    trimmed.value = 0
  }

  /** setLevel changes the server-side filter; the view restarts from the server's backlog at that level. */
  function setLevel(l: string): void {
    clear()
    socket.setLogLevel(l)
  }

  /** setCap changes how many lines are kept. */
  function setCap(n: number): void {
    cap.value = Math.max(100, Math.floor(n))
    if (lines.value.length > cap.value) {
      const next = lines.value.slice(lines.value.length - cap.value)
      forget(lines.value.slice(0, lines.value.length - cap.value))
      lines.value = next
    }
  }

  socket.on('log', onLog)
  socket.on('logsDropped', onDropped)
  socket.on('connected', ({ restarted }) => {
    // A new server process numbers its records from 1 again.
    if (restarted) seen.clear()
  })

  return { lines, paused, pending, cap, trimmed, level, flush, setPaused, clear, setLevel, setCap }
})

if (import.meta.hot) import.meta.hot.accept(acceptHMRUpdate(useLogsStore, import.meta.hot))
