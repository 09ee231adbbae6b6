import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { BACKOFF_MAX_MS, HubSocket, backoffDelay, type SocketHooks, type Status } from '../../src/api/socket'
import type { AuthCheck } from '../../src/lib/auth'
import type { ServerMessage } from '../../src/lib/protocol'
import { FakeWebSocket } from '../fake-websocket'

// The transport alone, without Pinia: its hooks are recorded in order.

beforeEach(() => {
  FakeWebSocket.reset()
  vi.stubGlobal('WebSocket', FakeWebSocket)
})
afterEach(() => {
  vi.useRealTimers()
})

function recorder(verdict: AuthCheck = 'unreachable') {
  const log: string[] = []
  const messages: ServerMessage[] = []
  const hooks: SocketHooks = {
    status: (s: Status) => log.push(`status ${s}`),
    backoff: (n, at) => log.push(`backoff ${n} ${at ? 'waiting' : 'none'}`),
    hello: (h) => log.push(`hello ${h.server}`),
    message: (m) => messages.push(m),
    lost: (code, _reason, hadHello) => log.push(`lost ${code} ${hadHello}`),
    refused: () => log.push('refused'),
  }
  const check = vi.fn(async (_token: string) => verdict)
  const socket = new HubSocket(hooks, { url: (t) => `ws://hub.test/start?token=${t}`, check })
  return { socket, log, messages, check }
}

describe('backoff', () => {
  it('starts near a second, doubles, and never exceeds 30 s', () => {
    expect(backoffDelay(0, () => 0)).toBe(500)
    expect(backoffDelay(0, () => 1)).toBe(1000)
    expect(backoffDelay(1, () => 1)).toBe(2000)
    expect(backoffDelay(3, () => 0.5)).toBe(6000)
    expect(backoffDelay(5, () => 1)).toBe(BACKOFF_MAX_MS)
    expect(backoffDelay(50, () => 1)).toBe(BACKOFF_MAX_MS)
    expect(backoffDelay(50, () => 0)).toBe(BACKOFF_MAX_MS / 2)
  })

  it('spreads retries with jitter', () => {
    const values = new Set<number>()
    for (let i = 0; i < 50; i++) values.add(backoffDelay(4))
    expect(values.size).toBeGreaterThan(5)
    for (const v of values) {
      expect(v).toBeGreaterThanOrEqual(8000)
      expect(v).toBeLessThanOrEqual(16000)
    }
  })
})

describe('HubSocket', () => {
  it('reports connecting, then live on hello, and sends only once live', () => {
    const { socket, log } = recorder()
    socket.start('k')
    const ws = FakeWebSocket.latest()
    expect(ws.url).toBe('ws://hub.test/start?token=k')
    ws.open()
    expect(socket.send({ action: 'subscribe' })).toBe(false)
    ws.hello({ server: 'hub' })
    expect(socket.send({ action: 'subscribe' })).toBe(true)
    expect(ws.actions).toEqual([{ action: 'subscribe' }])
    expect(log.filter((l) => l.startsWith('status') || l.startsWith('hello'))).toEqual([
      'status idle',
      'status connecting',
      'status live',
      'hello hub',
    ])
  })

  it('passes on messages that answer no request, and keeps answers for their request', async () => {
    const { socket, messages } = recorder()
    socket.start('k')
    const ws = FakeWebSocket.latest().hello()
    const p = socket.request({ action: 'getHistory' })
    const ref = ws.last('getHistory')!.ref
    ws.push({ type: 'traffic', data: { up: 1, down: 2 } })
    ws.push({ type: 'history', data: [], ref })
    await expect(p).resolves.toMatchObject({ type: 'history', ref })
    expect(messages.map((m) => m.type)).toEqual(['traffic'])
  })

  it('reports a lost live socket and schedules a retry', () => {
    vi.useFakeTimers()
    const { socket, log } = recorder()
    socket.start('k')
    FakeWebSocket.latest().hello()
    log.length = 0
    FakeWebSocket.latest().drop(1001)
    expect(log).toEqual(['lost 1001 true', 'backoff 1 waiting', 'status reconnecting'])
  })

  it('asks the auth check after a close before hello, and stops when the secret is refused', async () => {
    vi.useFakeTimers()
    const { socket, log, check } = recorder('refused')
    socket.start('bad')
    FakeWebSocket.latest().drop(1006)
    await vi.advanceTimersByTimeAsync(0)
    expect(check).toHaveBeenCalledWith('bad')
    expect(log.slice(-3)).toEqual(['status connecting', 'status auth-failed', 'refused'])
    await vi.advanceTimersByTimeAsync(5 * BACKOFF_MAX_MS)
    expect(FakeWebSocket.instances).toHaveLength(1)
  })

  it('retryNow does nothing unless a retry is waiting', () => {
    vi.useFakeTimers()
    const { socket } = recorder()
    socket.retryNow()
    expect(FakeWebSocket.instances).toHaveLength(0)
    socket.start('k')
    socket.retryNow()
    expect(FakeWebSocket.instances).toHaveLength(1)
    FakeWebSocket.latest().hello().drop()
    socket.retryNow()
    expect(FakeWebSocket.instances).toHaveLength(2)
  })
})
