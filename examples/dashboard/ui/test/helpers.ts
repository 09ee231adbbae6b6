import { createPinia, setActivePinia } from 'pinia'
import { vi } from 'vitest'
import { useSocketStore } from '../src/stores/socket'
import { FakeWebSocket } from './fake-websocket'

/**
 * fresh gives each test a new Pinia, an empty localStorage, the fake
 * WebSocket and an auth check that finds the server unreachable (tests that
 * need another answer stub fetch again).
 */
export function fresh(): void {
  FakeWebSocket.reset()
  vi.stubGlobal('WebSocket', FakeWebSocket)
  vi.stubGlobal(
    'fetch',
    vi.fn(async () => {
      throw new TypeError('connection refused')
    }),
  )
  localStorage.clear()
  setActivePinia(createPinia())
}

/** authAnswers makes GET auth/check answer with this HTTP status. */
export function authAnswers(status: number) {
  const fn = vi.fn(async (_url: URL | string, _init?: RequestInit) => new Response(null, { status }))
  vi.stubGlobal('fetch', fn)
  return fn
}

/** live starts the socket store with a secret and completes the handshake. */
export function live(token = 's3cret', hello: Record<string, unknown> = {}) {
  const socket = useSocketStore()
  socket.start(token)
  const ws = FakeWebSocket.latest().hello(hello)
  return { socket, ws }
}

/** settle lets pending promise callbacks (the auth check) run. */
export async function settle(): Promise<void> {
  if (vi.isFakeTimers()) {
    await vi.advanceTimersByTimeAsync(0)
    return
  }
  await new Promise((r) => setTimeout(r, 0))
}
