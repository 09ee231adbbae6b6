import { acceptHMRUpdate, defineStore } from 'pinia'
import { ref, shallowRef } from 'vue'
import { checkToken, socketURL } from '../lib/auth'
import {
  normalizeLevel,
  subscriptionTopics,
  type Action,
  type DataOf,
  type Hello,
  type Level,
  type MessageType,
  type Ref,
  type ServerMessage,
  type Subscribed,
} from '../lib/protocol'

/**
 * Status is what the header shows about the one WebSocket:
 * idle (no secret yet), connecting, live (hello received), reconnecting
 * (waiting for the next attempt, see retryAt) or auth-failed (the server
 * refused the secret; no more attempts until a new one is given).
 */
export type Status = 'idle' | 'connecting' | 'live' | 'reconnecting' | 'auth-failed'

/** Connected is announced after every hello: per-connection state must be rebuilt. */
export interface Connected {
  hello: Hello
  /** True when the server's log sequence went backwards: a new server process. */
  restarted: boolean
}

/** Disconnected is announced when a socket that had said hello closes. */
export interface Disconnected {
  code: number
  reason: string
}

/** Events are the server's message types plus two lifecycle events of the socket itself. */
interface EventMap {
  connected: Connected
  disconnected: Disconnected
}
type EventName = MessageType | keyof EventMap
type EventData<E extends EventName> = E extends MessageType
  ? DataOf<E>
  : E extends keyof EventMap
    ? EventMap[E]
    : never
type Handler<E extends EventName> = (data: EventData<E>) => void

/** The first retry waits about a second, then twice as long each time, up to 30 s. */
export const BACKOFF_MIN_MS = 1000
export const BACKOFF_MAX_MS = 30_000
/** How long an action waits for its result before giving up. */
export const REQUEST_TIMEOUT_MS = 15_000

const LEVEL_KEY = 'proxywatch.logLevel'

/**
 * backoffDelay is the wait before reconnect attempt number `attempt` (0-based):
 * min(30 s, 1 s × 2^attempt), of which a random half is taken away ("equal
 * jitter") so that many dashboards do not hammer a restarted server in step.
 */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(attempt, 30))
  return Math.round(ceiling / 2 + (random() * ceiling) / 2)
}

/** RequestError is how a pending action fails: an `error` answer, a timeout or a lost socket. */
export class RequestError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message)
    this.name = 'RequestError'
  }
}

interface Pending {
  resolve: (msg: ServerMessage) => void
  reject: (err: Error) => void
  timer: ReturnType<typeof setTimeout>
}

/**
 * useSocketStore owns the dashboard's single WebSocket to the hub and fans its
 * messages out to the domain stores (publish-subscribe, as the seed plans).
 *
 * It reconnects with exponential backoff, and on every (re)connect waits for
 * `hello`, announces `connected` so that the domain stores drop state that
 * belonged to the old connection, and subscribes again with `since` set to the
 * last log sequence number seen, so the log view resumes without gaps or
 * duplicates. A socket that closes before `hello` triggers an auth check to
 * tell a wrong secret from a server that is down.
 */
export const useSocketStore = defineStore('socket', () => {
  /** status of the connection, for the header. */
  const status = ref<Status>('idle')
  /** retryAt is when the next attempt starts (epoch ms) while reconnecting. */
  const retryAt = ref(0)
  /** attempt counts failed attempts since the last hello. */
  const attempt = ref(0)
  /** hello is the current server's greeting, null while not live. */
  const hello = shallowRef<Hello | null>(null)
  /** subscribed is the server's confirmation of our current subscription. */
  const subscribed = shallowRef<Subscribed | null>(null)
  /** logLevel is the minimum level the server sends us (filtered on the server). */
  const logLevel = ref<Level>(loadLevel())
  /** lastLogSeq is the highest log seq seen; sent as `since` on resubscribe. */
  const lastLogSeq = ref(0)
  /** authError says why the login screen is shown ('' if it is not). */
  const authError = ref('')
  /** token is the secret in use (null before login). */
  const token = ref<string | null>(null)

  // Handlers are stored untyped; on() and emit() keep the types straight.
  const handlers = new Map<EventName, Set<(data: unknown) => void>>()
  const pending = new Map<Ref, Pending>()
  let ws: WebSocket | null = null
  let gotHello = false
  let stopped = true
  let retryTimer: ReturnType<typeof setTimeout> | null = null
  let nextRef = 1

  /** on registers a handler for a message type or lifecycle event; it returns the unsubscribe function. */
  function on<E extends EventName>(name: E, fn: Handler<E>): () => void {
    let set = handlers.get(name)
    if (!set) {
      set = new Set()
      handlers.set(name, set)
    }
    const untyped = fn as (data: unknown) => void
    set.add(untyped)
    return () => {
      set.delete(untyped)
    }
  }

  function emit<E extends EventName>(name: E, data: EventData<E>): void {
    const set = handlers.get(name)
    if (!set) return
    for (const fn of [...set]) {
      try {
        fn(data)
      } catch (err) {
        // One broken view must not stop the others from getting data.
        console.error(`proxywatch: ${name} handler failed`, err)
      }
    }
  }

  /** start connects with the given secret (and keeps reconnecting until stop). */
  function start(secret: string): void {
    stop()
    token.value = secret
    authError.value = ''
    stopped = false
    attempt.value = 0
    open()
  }

  /** stop closes the socket and cancels any reconnect. */
  function stop(): void {
    stopped = true
    clearRetry()
    const sock = ws
    ws = null
    if (sock) {
      detach(sock)
      try {
        sock.close(1000, 'bye')
      } catch {
        // already closing
      }
    }
    if (gotHello) emit('disconnected', { code: 1000, reason: 'stopped' })
    gotHello = false
    hello.value = null
    subscribed.value = null
    failPending('disconnected')
    status.value = 'idle'
  }

  /** retryNow skips the rest of the backoff wait (the "retry now" button, the browser coming online). */
  function retryNow(): void {
    if (stopped || status.value !== 'reconnecting') return
    clearRetry()
    open()
  }

  function clearRetry(): void {
    if (retryTimer !== null) {
      clearTimeout(retryTimer)
      retryTimer = null
    }
    retryAt.value = 0
  }

  function open(): void {
    clearRetry()
    if (stopped || token.value === null) return
    status.value = 'connecting'
    gotHello = false
    let sock: WebSocket
    try {
      sock = new WebSocket(socketURL(token.value))
    } catch (err) {
      console.error('proxywatch: cannot open WebSocket', err)
      scheduleRetry()
      return
    }
    ws = sock
    sock.onmessage = (ev: MessageEvent) => {
      if (ws === sock) receive(ev.data)
    }
    sock.onclose = (ev: CloseEvent) => {
      if (ws === sock) closed(ev.code, ev.reason)
    }
    // An error is always followed by a close; the close handler decides.
    sock.onerror = () => {}
  }

  function detach(sock: WebSocket): void {
    sock.onmessage = null
    sock.onclose = null
    sock.onerror = null
  }

  function closed(code: number, reason: string): void {
    const hadHello = gotHello
    const secret = token.value
    ws = null
    gotHello = false
    hello.value = null
    subscribed.value = null
    failPending('disconnected')
    if (hadHello) emit('disconnected', { code, reason })
    if (stopped) {
      status.value = 'idle'
      return
    }
    if (hadHello || secret === null) {
      scheduleRetry()
      return
    }
    // Closed before hello: a refused upgrade looks the same to JavaScript as a
    // server that is down, so ask the server which one it is.
    status.value = 'connecting'
    void checkToken(secret).then((verdict) => {
      if (stopped || token.value !== secret || ws !== null || retryTimer !== null) return
      if (verdict === 'refused') {
        stopped = true
        status.value = 'auth-failed'
        authError.value = 'The server refused this secret.'
        return
      }
      scheduleRetry()
    })
  }

  function scheduleRetry(): void {
    const delay = backoffDelay(attempt.value)
    attempt.value++
    status.value = 'reconnecting'
    retryAt.value = Date.now() + delay
    retryTimer = setTimeout(() => {
      retryTimer = null
      open()
    }, delay)
  }

  function receive(raw: unknown): void {
    if (typeof raw !== 'string') return
    let msg: ServerMessage
    try {
      msg = JSON.parse(raw)
    } catch {
      console.warn('proxywatch: ignoring a frame that is not JSON')
      return
    }
    if (msg === null || typeof msg !== 'object' || typeof msg.type !== 'string') return
    dispatch(msg)
  }

  /** dispatch handles one parsed server message (exported for tests and tools). */
  function dispatch(msg: ServerMessage): void {
    switch (msg.type) {
      case 'hello': {
        const h = msg.data ?? ({ protocol: 0 } as Hello)
        const restarted = lastLogSeq.value > 0 && typeof h.logSeq === 'number' && h.logSeq < lastLogSeq.value
        if (restarted) lastLogSeq.value = 0
        gotHello = true
        attempt.value = 0
        status.value = 'live'
        authError.value = ''
        hello.value = h
        emit('connected', { hello: h, restarted })
        sendSubscribe()
        return
      }
      case 'subscribed':
        subscribed.value = msg.data
        break
      case 'log': {
        const seq = msg.data?.seq
        if (typeof seq === 'number' && seq > lastLogSeq.value) lastLogSeq.value = seq
        break
      }
      case 'result':
      case 'history':
      case 'error':
        if (msg.ref !== undefined && settle(msg)) return
        break
    }
    emit(msg.type, msg.data as never)
  }

  function settle(msg: ServerMessage & { ref?: Ref }): boolean {
    const p = pending.get(msg.ref as Ref)
    if (!p) return false
    pending.delete(msg.ref as Ref)
    clearTimeout(p.timer)
    if (msg.type === 'error') p.reject(new RequestError(msg.data?.message || msg.data?.code || 'error', msg.data?.code ?? 'error'))
    else p.resolve(msg)
    return true
  }

  function failPending(why: string): void {
    for (const [, p] of pending) {
      clearTimeout(p.timer)
      p.reject(new RequestError(`connection lost (${why})`, 'disconnected'))
    }
    pending.clear()
  }

  /** send writes one action if the socket is live; it reports whether it did. */
  function send(action: Action): boolean {
    if (!ws || !gotHello || ws.readyState !== WebSocket.OPEN) return false
    ws.send(JSON.stringify(action))
    return true
  }

  /**
   * request sends an action with a fresh `ref` and resolves with the server's
   * answer carrying that ref (result or history); an `error` answer, a
   * timeout or a lost socket rejects with a RequestError.
   */
  function request(action: Action, timeoutMs = REQUEST_TIMEOUT_MS): Promise<ServerMessage> {
    const r = `r${nextRef++}`
    return new Promise((resolve, reject) => {
      if (!send({ ...action, ref: r })) {
        reject(new RequestError('not connected', 'disconnected'))
        return
      }
      const timer = setTimeout(() => {
        pending.delete(r)
        reject(new RequestError(`no answer to ${action.action}`, 'timeout'))
      }, timeoutMs)
      pending.set(r, { resolve, reject, timer })
    })
  }

  /**
   * sendSubscribe (re)states the whole subscription, resuming logs after
   * lastLogSeq. withLogs false leaves the logs topic out (see setLogLevel).
   */
  function sendSubscribe(withLogs = true): boolean {
    let topics = subscriptionTopics(hello.value?.topics)
    if (!withLogs) topics = topics.filter((t) => t !== 'logs')
    const msg: Action = { action: 'subscribe', topics, logLevel: logLevel.value }
    if (withLogs && lastLogSeq.value > 0) msg.since = lastLogSeq.value
    return send(msg)
  }

  /**
   * setLogLevel changes the server-side log filter, and the server replays its
   * recent backlog at the new level. A subscribe that only changes the level
   * replays nothing (hub/PROTOCOL.md), so the logs topic is left for one
   * subscribe and taken again: a subscription that adds logs gets the backlog.
   * Records made between the two frames are in that backlog.
   */
  function setLogLevel(level: string): void {
    logLevel.value = normalizeLevel(level)
    try {
      localStorage.setItem(LEVEL_KEY, logLevel.value)
    } catch {
      // not persisted
    }
    lastLogSeq.value = 0
    if (sendSubscribe(false)) sendSubscribe()
  }

  /** maxMessageBytes is the server's read limit for our frames. */
  function maxMessageBytes(): number {
    return hello.value?.maxMessageBytes ?? 65536
  }

  return {
    status,
    retryAt,
    attempt,
    hello,
    subscribed,
    logLevel,
    lastLogSeq,
    authError,
    token,
    on,
    start,
    stop,
    retryNow,
    dispatch,
    send,
    request,
    sendSubscribe,
    setLogLevel,
    maxMessageBytes,
  }
})

function loadLevel(): Level {
  try {
    return normalizeLevel(localStorage.getItem(LEVEL_KEY) ?? 'INFO')
  } catch {
    return 'INFO'
  }
}

if (import.meta.hot) import.meta.hot.accept(acceptHMRUpdate(useSocketStore, import.meta.hot))
