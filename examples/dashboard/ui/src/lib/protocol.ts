// Types of the hub's wire protocol v1 (hub/PROTOCOL.md is authoritative).
// Every server message is one JSON object per WebSocket text frame with a
// `type` and a `data` field; unknown types and fields are ignored.

/** Log levels in increasing severity, as the server spells them. */
export const LEVELS = ['DEBUG', 'INFO', 'WARN', 'ERROR'] as const
export type Level = (typeof LEVELS)[number]

/** Topics this UI subscribes to, by their seed names. */
export const TOPICS = ['traffic', 'connections', 'logs', 'events'] as const
export type Topic = (typeof TOPICS)[number]

/**
 * PREFERRED_TOPICS maps a seed topic to the cheaper form this UI asks for
 * instead when the server offers it (hello.topics): the live list as changes
 * (a full list once, then what is new, moved or gone), and events batched,
 * one frame per interval instead of one per connection opened or closed.
 */
export const PREFERRED_TOPICS: Partial<Record<Topic, string>> = {
  connections: 'connectionsDelta',
  events: 'eventBatches',
}

/** subscriptionTopics lists the topics to ask for of a server offering `offered` (absent: a seed server). */
export function subscriptionTopics(offered: readonly string[] | undefined): string[] {
  if (!offered || offered.length === 0) return [...TOPICS]
  const topics: string[] = []
  for (const t of TOPICS) {
    const better = PREFERRED_TOPICS[t]
    if (better && offered.includes(better)) topics.push(better)
    else if (offered.includes(t)) topics.push(t)
  }
  return topics
}

/** Hello is the first frame after the upgrade: server identity and capabilities. */
export interface Hello {
  protocol: number
  server?: string
  intervals?: { traffic?: number; connections?: number; events?: number }
  topics?: string[]
  actions?: string[]
  logSeq?: number
  logBacklog?: number
  maxMessageBytes?: number
}

/**
 * Conn is one connection entry, live or closed. The seed's fields are id,
 * method, host, url, remote, protocol, up and down; the rest are protocol v1
 * extensions and may be absent when talking to an older server.
 */
export interface Conn {
  id: number
  method: string
  host: string
  url: string
  /** The client address (host:port). */
  remote: string
  protocol: string
  up: number
  down: number
  /** RFC 3339 start time. */
  start?: string
  upRate?: number
  downRate?: number
  status?: number
  parent?: number
  /** RFC 3339 end time (closed entries only). */
  end?: string
  endReason?: string
  error?: string
}

/** Traffic is one sample: bytes moved during the last interval. */
export interface Traffic {
  up: number
  down: number
  upTotal?: number
  downTotal?: number
  live?: number
  /** The real length of the interval in milliseconds. */
  interval?: number
}

/** ConnMove is the compact entry of a connection whose counters moved: its id and the fields that changed. */
export interface ConnMove {
  id: number
  up?: number
  down?: number
  upRate?: number
  downRate?: number
  status?: number
}

/**
 * ConnectionsDelta is the live list as changes. With `full`, `conns` is the
 * whole list; otherwise `conns` are new (or changed) entries, `moved` compact
 * entries of those whose counters moved and `removed` the ids that left.
 */
export interface ConnectionsDelta {
  full: boolean
  conns: Conn[]
  moved: ConnMove[]
  removed: number[]
}

export interface ConnEvent {
  event: 'opened' | 'closed'
  conn: Conn
}

export interface LogRecord {
  level: string
  session?: number
  message: string
  time?: string
  seq?: number
  conn?: number
  source?: string
}

export interface Subscribed {
  topics: string[]
  logLevel: string
}

export interface ActionResult {
  action: string
  closed?: number
  ids?: number[]
}

export interface ProtocolError {
  code: string
  message: string
  action?: string
}

export type Ref = string | number

/** ServerMessage is the union of every message type the UI understands. */
export type ServerMessage =
  | { type: 'hello'; data: Hello }
  | { type: 'subscribed'; data: Subscribed }
  | { type: 'traffic'; data: Traffic }
  | { type: 'connections'; data: Conn[] | null }
  | { type: 'connectionsDelta'; data: ConnectionsDelta | null }
  | { type: 'event'; data: ConnEvent }
  | { type: 'eventBatch'; data: ConnEvent[] | null }
  | { type: 'log'; data: LogRecord }
  | { type: 'logsDropped'; data: { count: number } }
  | { type: 'history'; data: Conn[] | null; ref?: Ref }
  | { type: 'result'; data: ActionResult; ref?: Ref }
  | { type: 'error'; data: ProtocolError; ref?: Ref }

export type MessageType = ServerMessage['type']

/** DataOf gives the data type of the message with the given type. */
export type DataOf<T extends MessageType> = Extract<ServerMessage, { type: T }>['data']

/** Action is any client-to-server message. */
export interface Action {
  action: string
  ref?: Ref
  [key: string]: unknown
}

/** normalizeLevel maps anything the server or a user sends onto a known level. */
export function normalizeLevel(s: string | undefined | null): Level {
  const u = (s ?? '').toUpperCase()
  if (u === 'WARNING') return 'WARN'
  return (LEVELS as readonly string[]).includes(u) ? (u as Level) : 'INFO'
}
