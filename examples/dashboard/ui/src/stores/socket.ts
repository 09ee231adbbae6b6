import { acceptHMRUpdate, defineStore } from 'pinia'
import { ref, shallowRef } from 'vue'
import { MessageBus } from '../api/bus'
import { HubSocket, type Status } from '../api/socket'
import { normalizeLevel, subscriptionTopics, type Action, type Hello, type Level, type Subscribed } from '../lib/protocol'

const LEVEL_KEY = 'proxywatch.logLevel'

/**
 * useSocketStore holds the state of the dashboard's single connection to the
 * hub, for the header and the domain stores: its status, the server's
 * greeting, the subscription and the log cursor. The transport (src/api/socket.ts)
 * does the connecting, reconnecting and sending; the bus (src/api/bus.ts)
 * fans messages out to the domain stores.
 *
 * On every (re)connect it announces `connected` so that the domain stores drop
 * state that belonged to the old connection, and subscribes again with
 * `since` set to the last log sequence number seen, so the log view resumes
 * without gaps or duplicates.
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

  const bus = new MessageBus()
  const transport = new HubSocket({
    status(s) {
      status.value = s
    },
    backoff(n, at) {
      attempt.value = n
      retryAt.value = at
    },
    hello(h) {
      const restarted = lastLogSeq.value > 0 && typeof h.logSeq === 'number' && h.logSeq < lastLogSeq.value
      if (restarted) lastLogSeq.value = 0
      authError.value = ''
      hello.value = h
      bus.emit('connected', { hello: h, restarted })
      sendSubscribe()
    },
    message(msg) {
      if (msg.type === 'subscribed') subscribed.value = msg.data
      else if (msg.type === 'log') {
        const seq = msg.data?.seq
        if (typeof seq === 'number' && seq > lastLogSeq.value) lastLogSeq.value = seq
      }
      bus.emit(msg.type, msg.data as never)
    },
    lost(code, reason, hadHello) {
      hello.value = null
      subscribed.value = null
      if (hadHello) bus.emit('disconnected', { code, reason })
    },
    refused() {
      authError.value = 'The server refused this secret.'
    },
  })

  /** start connects with the given secret (and keeps reconnecting until stop). */
  function start(secret: string): void {
    token.value = secret
    authError.value = ''
    transport.start(secret)
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
    return transport.send(msg)
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
    /** on registers a handler for a message type or lifecycle event; it returns the unsubscribe function. */
    on: bus.on.bind(bus) as MessageBus['on'],
    start,
    /** stop closes the socket and cancels any reconnect. */
    stop: () => transport.stop(),
    /** retryNow skips the rest of the backoff wait (the "retry now" button, the browser coming online). */
    retryNow: () => transport.retryNow(),
    /** dispatch handles one parsed server message (for tests and tools). */
    dispatch: transport.dispatch.bind(transport) as HubSocket['dispatch'],
    /** send writes one action if the socket is live; it reports whether it did. */
    send: transport.send.bind(transport) as HubSocket['send'],
    /** request sends an action and resolves with its answer (see HubSocket.request). */
    request: transport.request.bind(transport) as HubSocket['request'],
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
