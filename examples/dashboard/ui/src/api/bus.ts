import type { DataOf, Hello, MessageType } from '../lib/protocol'

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
export type EventName = MessageType | keyof EventMap
export type EventData<E extends EventName> = E extends MessageType
  ? DataOf<E>
  : E extends keyof EventMap
    ? EventMap[E]
    : never
export type Handler<E extends EventName> = (data: EventData<E>) => void

/**
 * MessageBus fans the socket's messages and lifecycle events out to the
 * domain stores (publish-subscribe). A handler that throws is logged and does
 * not keep the others from their data.
 */
export class MessageBus {
  // Handlers are stored untyped; on() and emit() keep the types straight.
  private readonly handlers = new Map<EventName, Set<(data: unknown) => void>>()

  /** on registers a handler for a message type or lifecycle event; it returns the unsubscribe function. */
  on<E extends EventName>(name: E, fn: Handler<E>): () => void {
    let set = this.handlers.get(name)
    if (!set) {
      set = new Set()
      this.handlers.set(name, set)
    }
    const untyped = fn as (data: unknown) => void
    set.add(untyped)
    return () => {
      set.delete(untyped)
    }
  }

  /** emit calls every handler of name with data, in the order they registered. */
  emit<E extends EventName>(name: E, data: EventData<E>): void {
    const set = this.handlers.get(name)
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
}
