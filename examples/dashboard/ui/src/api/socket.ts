import { checkToken, socketURL, type AuthCheck } from '../lib/auth'
import type { Action, Hello, Ref, ServerMessage } from '../lib/protocol'

/**
 * Status is what the header shows about the one WebSocket:
 * idle (no secret yet), connecting, live (hello received), reconnecting
 * (waiting for the next attempt, see retryAt) or auth-failed (the server
 * refused the secret; no more attempts until a new one is given).
 */
export type Status = 'idle' | 'connecting' | 'live' | 'reconnecting' | 'auth-failed'

/** The first retry waits about a second, then twice as long each time, up to 30 s. */
export const BACKOFF_MIN_MS = 1000
export const BACKOFF_MAX_MS = 30_000
/** How long an action waits for its result before giving up. */
export const REQUEST_TIMEOUT_MS = 15_000

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

/** SocketHooks is how the transport tells its owner what happens; every hook runs synchronously. */
export interface SocketHooks {
  /** status reports each change of the connection status. */
  status(s: Status): void
  /** backoff reports the failed attempts since the last hello and when the next starts (epoch ms, 0 for none). */
  backoff(attempt: number, retryAt: number): void
  /** hello reports the server's greeting: the socket is live and actions may be sent. */
  hello(h: Hello): void
  /** message reports every other server message that answers no pending request. */
  message(msg: ServerMessage): void
  /** lost reports that the socket closed (or was stopped); hadHello tells whether it had been live. */
  lost(code: number, reason: string, hadHello: boolean): void
  /** refused reports that the server refused the secret; there are no more attempts. */
  refused(): void
}

/** Endpoints are the two ways to the server, replaceable in tests. */
export interface Endpoints {
  url: (token: string) => string
  check: (token: string) => Promise<AuthCheck>
}

interface Pending {
  resolve: (msg: ServerMessage) => void
  reject: (err: Error) => void
  timer: ReturnType<typeof setTimeout>
}

/**
 * HubSocket is the transport to the hub: the one WebSocket, its handshake
 * (hello), reconnecting with exponential backoff, the auth check that tells a
 * wrong secret from a server that is down, sending actions and matching their
 * answers by `ref`. It keeps no reactive state: it reports through its hooks.
 */
export class HubSocket {
  private ws: WebSocket | null = null
  private gotHello = false
  private stopped = true
  private token: string | null = null
  private attempt = 0
  private retryTimer: ReturnType<typeof setTimeout> | null = null
  private nextRef = 1
  private readonly pending = new Map<Ref, Pending>()

  constructor(
    private readonly hooks: SocketHooks,
    private readonly endpoints: Endpoints = { url: socketURL, check: checkToken },
  ) {}

  /** start connects with the given secret (and keeps reconnecting until stop). */
  start(secret: string): void {
    this.stop()
    this.token = secret
    this.stopped = false
    this.setBackoff(0, 0)
    this.open()
  }

  /** stop closes the socket and cancels any reconnect. */
  stop(): void {
    this.stopped = true
    this.clearRetry()
    const sock = this.ws
    this.ws = null
    if (sock) {
      detach(sock)
      try {
        sock.close(1000, 'bye')
      } catch {
        // already closing
      }
    }
    const hadHello = this.gotHello
    this.gotHello = false
    this.hooks.lost(1000, 'stopped', hadHello)
    this.failPending('disconnected')
    this.hooks.status('idle')
  }

  /** retryNow skips the rest of the backoff wait, if one is running. */
  retryNow(): void {
    if (this.stopped || this.retryTimer === null) return
    this.clearRetry()
    this.open()
  }

  /** send writes one action if the socket is live; it reports whether it did. */
  send(action: Action): boolean {
    const ws = this.ws
    if (!ws || !this.gotHello || ws.readyState !== WebSocket.OPEN) return false
    ws.send(JSON.stringify(action))
    return true
  }

  /**
   * request sends an action with a fresh `ref` and resolves with the server's
   * answer carrying that ref (result or history); an `error` answer, a
   * timeout or a lost socket rejects with a RequestError.
   */
  request(action: Action, timeoutMs = REQUEST_TIMEOUT_MS): Promise<ServerMessage> {
    const r = `r${this.nextRef++}`
    return new Promise((resolve, reject) => {
      if (!this.send({ ...action, ref: r })) {
        reject(new RequestError('not connected', 'disconnected'))
        return
      }
      const timer = setTimeout(() => {
        this.pending.delete(r)
        reject(new RequestError(`no answer to ${action.action}`, 'timeout'))
      }, timeoutMs)
      this.pending.set(r, { resolve, reject, timer })
    })
  }

  /** dispatch handles one parsed server message as if it had arrived on the socket. */
  dispatch(msg: ServerMessage): void {
    switch (msg.type) {
      case 'hello':
        this.gotHello = true
        this.setBackoff(0, 0)
        this.hooks.status('live')
        this.hooks.hello(msg.data ?? ({ protocol: 0 } as Hello))
        return
      case 'result':
      case 'history':
      case 'error':
        if (msg.ref !== undefined && this.settle(msg)) return
        break
    }
    this.hooks.message(msg)
  }

  private open(): void {
    this.clearRetry()
    if (this.stopped || this.token === null) return
    this.hooks.status('connecting')
    this.gotHello = false
    let sock: WebSocket
    try {
      sock = new WebSocket(this.endpoints.url(this.token))
    } catch (err) {
      console.error('proxywatch: cannot open WebSocket', err)
      this.scheduleRetry()
      return
    }
    this.ws = sock
    sock.onmessage = (ev: MessageEvent) => {
      if (this.ws === sock) this.receive(ev.data)
    }
    sock.onclose = (ev: CloseEvent) => {
      if (this.ws === sock) this.closed(ev.code, ev.reason)
    }
    // An error is always followed by a close; the close handler decides.
    sock.onerror = () => {}
  }

  private closed(code: number, reason: string): void {
    const hadHello = this.gotHello
    const secret = this.token
    this.ws = null
    this.gotHello = false
    this.failPending('disconnected')
    this.hooks.lost(code, reason, hadHello)
    if (this.stopped) {
      this.hooks.status('idle')
      return
    }
    if (hadHello || secret === null) {
      this.scheduleRetry()
      return
    }
    // Closed before hello: a refused upgrade looks the same to JavaScript as a
    // server that is down, so ask the server which one it is.
    this.hooks.status('connecting')
    void this.endpoints.check(secret).then((verdict) => {
      if (this.stopped || this.token !== secret || this.ws !== null || this.retryTimer !== null) return
      if (verdict === 'refused') {
        this.stopped = true
        this.hooks.status('auth-failed')
        this.hooks.refused()
        return
      }
      this.scheduleRetry()
    })
  }

  private receive(raw: unknown): void {
    if (typeof raw !== 'string') return
    let msg: ServerMessage
    try {
      msg = JSON.parse(raw)
    } catch {
      console.warn('proxywatch: ignoring a frame that is not JSON')
      return
    }
    if (msg === null || typeof msg !== 'object' || typeof msg.type !== 'string') return
    this.dispatch(msg)
  }

  private scheduleRetry(): void {
    const delay = backoffDelay(this.attempt)
    this.setBackoff(this.attempt + 1, Date.now() + delay)
    this.hooks.status('reconnecting')
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      this.open()
    }, delay)
  }

  private clearRetry(): void {
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer)
      this.retryTimer = null
    }
    this.setBackoff(this.attempt, 0)
  }

  private setBackoff(attempt: number, retryAt: number): void {
    this.attempt = attempt
    this.hooks.backoff(attempt, retryAt)
  }

  private settle(msg: ServerMessage & { ref?: Ref }): boolean {
    const p = this.pending.get(msg.ref as Ref)
    if (!p) return false
    this.pending.delete(msg.ref as Ref)
    clearTimeout(p.timer)
    if (msg.type === 'error') p.reject(new RequestError(msg.data?.message || msg.data?.code || 'error', msg.data?.code ?? 'error'))
    else p.resolve(msg)
    return true
  }

  private failPending(why: string): void {
    for (const [, p] of this.pending) {
      clearTimeout(p.timer)
      p.reject(new RequestError(`connection lost (${why})`, 'disconnected'))
    }
    this.pending.clear()
  }
}

function detach(sock: WebSocket): void {
  sock.onmessage = null
  sock.onclose = null
  sock.onerror = null
}
