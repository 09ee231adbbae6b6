import type { Action } from '../src/lib/protocol'

/**
 * FakeWebSocket stands in for the browser's WebSocket, the boundary between
 * the UI and the hub. Tests play the server: open the socket, send frames,
 * close it, and read what the UI sent.
 */
export class FakeWebSocket {
  static readonly CONNECTING = 0
  static readonly OPEN = 1
  static readonly CLOSING = 2
  static readonly CLOSED = 3
  /** Every socket created, oldest first. */
  static instances: FakeWebSocket[] = []

  readonly url: string
  readyState = FakeWebSocket.CONNECTING
  readonly sent: string[] = []
  closedByClient: { code?: number; reason?: string } | null = null
  onopen: ((ev: Event) => void) | null = null
  onmessage: ((ev: MessageEvent) => void) | null = null
  onclose: ((ev: CloseEvent) => void) | null = null
  onerror: ((ev: Event) => void) | null = null

  constructor(url: string) {
    this.url = url
    FakeWebSocket.instances.push(this)
  }

  static reset(): void {
    FakeWebSocket.instances = []
  }

  /** latest is the most recently created socket. */
  static latest(): FakeWebSocket {
    const ws = FakeWebSocket.instances[FakeWebSocket.instances.length - 1]
    if (!ws) throw new Error('no WebSocket was created')
    return ws
  }

  send(data: string): void {
    if (this.readyState !== FakeWebSocket.OPEN) throw new Error('send on a socket that is not open')
    this.sent.push(data)
  }

  close(code?: number, reason?: string): void {
    this.closedByClient = { code, reason }
    this.readyState = FakeWebSocket.CLOSED
  }

  // --- the server's side ---

  /** open completes the upgrade. */
  open(): this {
    this.readyState = FakeWebSocket.OPEN
    this.onopen?.(new Event('open'))
    return this
  }

  /** push sends one server frame (an object is JSON-encoded, a string sent as is). */
  push(msg: unknown): this {
    const data = typeof msg === 'string' ? msg : JSON.stringify(msg)
    this.onmessage?.({ data } as MessageEvent)
    return this
  }

  /** hello opens the socket and greets, as the hub does after the upgrade. */
  hello(data: Record<string, unknown> = {}): this {
    if (this.readyState !== FakeWebSocket.OPEN) this.open()
    return this.push({
      type: 'hello',
      data: {
        protocol: 1,
        server: 'proxywatch test',
        intervals: { traffic: 1000, connections: 2000 },
        topics: ['traffic', 'connections', 'logs', 'events', 'eventBatches', 'connectionsDelta'],
        logSeq: 0,
        logBacklog: 200,
        maxMessageBytes: 65536,
        ...data,
      },
    })
  }

  /** drop closes the socket from the server's side (or the network's). */
  drop(code = 1006, reason = ''): this {
    this.readyState = FakeWebSocket.CLOSED
    this.onclose?.({ code, reason } as CloseEvent)
    return this
  }

  /** actions are the frames the UI sent, decoded. */
  get actions(): Action[] {
    return this.sent.map((s) => JSON.parse(s) as Action)
  }

  /** last returns the last action of the given kind. */
  last(action: string): Action | undefined {
    return [...this.actions].reverse().find((a) => a.action === action)
  }
}
