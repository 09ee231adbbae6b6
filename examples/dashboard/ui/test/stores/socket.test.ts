import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Connected, Disconnected } from '../../src/api/bus'
import { BACKOFF_MAX_MS, REQUEST_TIMEOUT_MS, RequestError } from '../../src/api/socket'
import { useSocketStore } from '../../src/stores/socket'
import { FakeWebSocket } from '../fake-websocket'
import { authAnswers, fresh, live, settle } from '../helpers'

beforeEach(fresh)
afterEach(() => {
  vi.useRealTimers()
})

describe('connecting', () => {
  it('opens the hub socket next to the page with the secret as token', () => {
    const socket = useSocketStore()
    expect(socket.status).toBe('idle')
    socket.start('a b&c')
    const ws = FakeWebSocket.latest()
    expect(ws.url).toBe('ws://127.0.0.1:8000/start?token=a+b%26c')
    expect(socket.status).toBe('connecting')
  })

  it('goes live on hello and subscribes to every topic at the stored level, without since', () => {
    const { socket, ws } = live()
    expect(socket.status).toBe('live')
    expect(socket.hello?.server).toBe('proxywatch test')
    expect(ws.actions).toEqual([{ action: 'subscribe', topics: ['traffic', 'connectionsDelta', 'logs', 'eventBatches'], logLevel: 'INFO' }])
  })

  it('does not subscribe before hello', () => {
    const socket = useSocketStore()
    socket.start('t')
    const ws = FakeWebSocket.latest().open()
    expect(ws.sent).toEqual([])
    expect(socket.status).toBe('connecting')
  })

  it('asks a server with batched events but no deltas for each form it has', () => {
    const { ws } = live('t', { topics: ['traffic', 'connections', 'logs', 'events', 'eventBatches'] })
    expect(ws.last('subscribe')?.topics).toEqual(['traffic', 'connections', 'logs', 'eventBatches'])
  })

  it('asks a server without batched events for single events', () => {
    const { ws } = live('t', { topics: ['traffic', 'connections', 'logs', 'events'] })
    expect(ws.last('subscribe')?.topics).toEqual(['traffic', 'connections', 'logs', 'events'])
  })

  it('asks a seed server that lists no topics for the seed topics', () => {
    const { ws } = live('t', { topics: undefined })
    expect(ws.last('subscribe')?.topics).toEqual(['traffic', 'connections', 'logs', 'events'])
  })

  it('asks only for the topics the server offers', () => {
    const { ws } = live('t', { topics: ['traffic', 'connections', 'logs'] })
    expect(ws.last('subscribe')?.topics).toEqual(['traffic', 'connections', 'logs'])
  })

  it('keeps the confirmation of the subscription', () => {
    const { socket, ws } = live()
    ws.push({ type: 'subscribed', data: { topics: ['traffic', 'logs'], logLevel: 'WARN' } })
    expect(socket.subscribed).toEqual({ topics: ['traffic', 'logs'], logLevel: 'WARN' })
  })

  it('announces connected after hello, before anything else arrives', () => {
    const socket = useSocketStore()
    const seen: Connected[] = []
    socket.on('connected', (c) => seen.push(c))
    socket.start('t')
    FakeWebSocket.latest().hello({ logSeq: 42 })
    expect(seen).toHaveLength(1)
    expect(seen[0].hello.logSeq).toBe(42)
    expect(seen[0].restarted).toBe(false)
  })

  it('ignores frames that are not JSON, messages of unknown types, and unknown fields', () => {
    const { socket, ws } = live()
    const traffic = vi.fn()
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    socket.on('traffic', traffic)
    ws.push('not json {')
    expect(warn).toHaveBeenCalledOnce()
    ws.push('null')
    ws.push({ type: 'futureThing', data: { x: 1 } })
    ws.push({ nope: true })
    ws.push({ type: 'traffic', data: { up: 1, down: 2, brandNew: 'field' }, extra: 1 })
    expect(traffic).toHaveBeenCalledTimes(1)
    expect(traffic.mock.calls[0][0]).toMatchObject({ up: 1, down: 2 })
    expect(socket.status).toBe('live')
  })

  it('keeps delivering to other handlers when one throws', () => {
    const { socket, ws } = live()
    const spy = vi.spyOn(console, 'error').mockImplementation(() => {})
    const good = vi.fn()
    socket.on('traffic', () => {
      throw new Error('broken view')
    })
    socket.on('traffic', good)
    ws.push({ type: 'traffic', data: { up: 1, down: 1 } })
    expect(good).toHaveBeenCalledOnce()
    expect(spy).toHaveBeenCalled()
  })

  it('stops delivering to a handler after it unsubscribes', () => {
    const { socket, ws } = live()
    const fn = vi.fn()
    const off = socket.on('log', fn)
    ws.push({ type: 'log', data: { level: 'INFO', message: 'a', seq: 1 } })
    off()
    ws.push({ type: 'log', data: { level: 'INFO', message: 'b', seq: 2 } })
    expect(fn).toHaveBeenCalledTimes(1)
  })
})

describe('reconnecting', () => {
  it('reconnects with growing delays and resets them after hello', async () => {
    vi.useFakeTimers()
    vi.spyOn(Math, 'random').mockReturnValue(1)
    const { socket, ws } = live()
    const down: Disconnected[] = []
    socket.on('disconnected', (d) => down.push(d))

    ws.drop(1001, 'going away')
    expect(down).toEqual([{ code: 1001, reason: 'going away' }])
    expect(socket.status).toBe('reconnecting')
    expect(socket.retryAt - Date.now()).toBe(1000)
    expect(FakeWebSocket.instances).toHaveLength(1)

    await vi.advanceTimersByTimeAsync(999)
    expect(FakeWebSocket.instances).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(1)
    expect(FakeWebSocket.instances).toHaveLength(2)
    expect(socket.status).toBe('connecting')

    // The server is down: each attempt fails before hello, the auth check
    // cannot reach it either, and the waits double up to the cap.
    const waits: number[] = []
    for (let i = 0; i < 7; i++) {
      FakeWebSocket.latest().drop(1006)
      await settle()
      expect(socket.status).toBe('reconnecting')
      const wait = socket.retryAt - Date.now()
      waits.push(wait)
      const before = FakeWebSocket.instances.length
      await vi.advanceTimersByTimeAsync(wait)
      expect(FakeWebSocket.instances).toHaveLength(before + 1)
    }
    expect(waits).toEqual([2000, 4000, 8000, 16000, 30000, 30000, 30000])
    expect(fetch).toHaveBeenCalledTimes(7)

    // Back up: hello resets the backoff.
    FakeWebSocket.latest().hello()
    expect(socket.status).toBe('live')
    expect(socket.attempt).toBe(0)
    FakeWebSocket.latest().drop()
    expect(socket.retryAt - Date.now()).toBe(1000)
  })

  it('resubscribes on every reconnect with since = the last log seq seen', async () => {
    vi.useFakeTimers()
    const { socket, ws } = live()
    ws.push({ type: 'log', data: { level: 'INFO', message: 'one', seq: 7 } })
    ws.push({ type: 'log', data: { level: 'INFO', message: 'two', seq: 9 } })
    expect(socket.lastLogSeq).toBe(9)

    ws.drop()
    await vi.advanceTimersByTimeAsync(BACKOFF_MAX_MS)
    const ws2 = FakeWebSocket.latest()
    expect(ws2).not.toBe(ws)
    ws2.hello({ logSeq: 20 })
    expect(ws2.actions).toEqual([
      { action: 'subscribe', topics: ['traffic', 'connectionsDelta', 'logs', 'eventBatches'], logLevel: 'INFO', since: 9 },
    ])

    ws2.push({ type: 'log', data: { level: 'INFO', message: 'three', seq: 12 } })
    ws2.drop()
    await vi.advanceTimersByTimeAsync(BACKOFF_MAX_MS)
    FakeWebSocket.latest().hello({ logSeq: 30 })
    expect(FakeWebSocket.latest().last('subscribe')?.since).toBe(12)
  })

  it('starts over without since when the server restarted (its log seq went back)', async () => {
    vi.useFakeTimers()
    const { socket, ws } = live()
    const seen: Connected[] = []
    socket.on('connected', (c) => seen.push(c))
    ws.push({ type: 'log', data: { level: 'INFO', message: 'old', seq: 500 } })
    ws.drop()
    await vi.advanceTimersByTimeAsync(BACKOFF_MAX_MS)
    const ws2 = FakeWebSocket.latest().hello({ logSeq: 3 })
    expect(seen.at(-1)?.restarted).toBe(true)
    expect(socket.lastLogSeq).toBe(0)
    expect(ws2.last('subscribe')).not.toHaveProperty('since')
  })

  it('shows the login screen when the server refuses the secret, and stops retrying', async () => {
    vi.useFakeTimers()
    const check = authAnswers(401)
    const socket = useSocketStore()
    socket.start('wrong')
    FakeWebSocket.latest().drop(1006)
    await settle()
    expect(check).toHaveBeenCalledOnce()
    const [url, init] = check.mock.calls[0]
    expect(String(url)).toBe('http://127.0.0.1:8000/auth/check')
    expect(new Headers(init?.headers).get('Authorization')).toBe('Bearer wrong')
    expect(socket.status).toBe('auth-failed')
    expect(socket.authError).toMatch(/refused/)
    await vi.advanceTimersByTimeAsync(5 * BACKOFF_MAX_MS)
    expect(FakeWebSocket.instances).toHaveLength(1)

    // A new secret starts again.
    socket.start('right')
    FakeWebSocket.latest().hello()
    expect(socket.status).toBe('live')
    expect(socket.authError).toBe('')
  })

  it('keeps retrying when the secret is fine but the socket failed', async () => {
    vi.useFakeTimers()
    authAnswers(204)
    const socket = useSocketStore()
    socket.start('good')
    FakeWebSocket.latest().drop(1006)
    await settle()
    expect(socket.status).toBe('reconnecting')
  })

  it('retryNow skips the wait', async () => {
    vi.useFakeTimers()
    const { socket, ws } = live()
    ws.drop()
    expect(socket.status).toBe('reconnecting')
    socket.retryNow()
    expect(FakeWebSocket.instances).toHaveLength(2)
    expect(socket.status).toBe('connecting')
    // Only one attempt at a time: the cancelled timer does not open another.
    await vi.advanceTimersByTimeAsync(BACKOFF_MAX_MS)
    expect(FakeWebSocket.instances).toHaveLength(2)
  })

  it('stop closes the socket and cancels reconnecting', async () => {
    vi.useFakeTimers()
    const { socket, ws } = live()
    const down = vi.fn()
    socket.on('disconnected', down)
    socket.stop()
    expect(ws.closedByClient).toEqual({ code: 1000, reason: 'bye' })
    expect(socket.status).toBe('idle')
    expect(down).toHaveBeenCalledOnce()
    await vi.advanceTimersByTimeAsync(5 * BACKOFF_MAX_MS)
    expect(FakeWebSocket.instances).toHaveLength(1)
  })

  it('ignores events from a socket it has replaced', () => {
    const socket = useSocketStore()
    socket.start('a')
    const old = FakeWebSocket.latest()
    socket.start('b')
    const traffic = vi.fn()
    socket.on('traffic', traffic)
    old.push({ type: 'traffic', data: { up: 1, down: 1 } })
    old.drop()
    expect(traffic).not.toHaveBeenCalled()
    expect(socket.status).toBe('connecting')
  })
})

describe('actions', () => {
  it('resolves a request with the result that carries its ref', async () => {
    const { socket, ws } = live()
    const p = socket.request({ action: 'closeConnection', id: 42 })
    const sent = ws.last('closeConnection')!
    expect(sent).toMatchObject({ action: 'closeConnection', id: 42 })
    expect(sent.ref).toBeTruthy()
    // Another request's answer and an unrelated result do not settle it.
    ws.push({ type: 'result', data: { action: 'closeConnection', closed: 0, ids: [] }, ref: 'someone-else' })
    ws.push({ type: 'result', data: { action: 'closeConnection', closed: 1, ids: [42] }, ref: sent.ref })
    await expect(p).resolves.toEqual({ type: 'result', data: { action: 'closeConnection', closed: 1, ids: [42] }, ref: sent.ref })
  })

  it('resolves getHistory with the history message', async () => {
    const { socket, ws } = live()
    const p = socket.request({ action: 'getHistory', limit: 10 })
    const ref = ws.last('getHistory')!.ref
    ws.push({ type: 'history', data: [{ id: 1 }], ref })
    const msg = await p
    expect(msg.type).toBe('history')
    expect(msg.data).toEqual([{ id: 1 }])
  })

  it('rejects a request answered by an error, and keeps the socket', async () => {
    const { socket, ws } = live()
    const onError = vi.fn()
    socket.on('error', onError)
    const p = socket.request({ action: 'closeConnections', filter: {} })
    const ref = ws.last('closeConnections')!.ref
    ws.push({ type: 'error', data: { code: 'bad_request', message: 'empty filter', action: 'closeConnections' }, ref })
    await expect(p).rejects.toMatchObject({ name: 'RequestError', code: 'bad_request', message: 'empty filter' })
    // Answered errors go to the caller only; the socket stays live.
    expect(onError).not.toHaveBeenCalled()
    expect(socket.status).toBe('live')
  })

  it('publishes errors that answer no request', () => {
    const { socket, ws } = live()
    const onError = vi.fn()
    socket.on('error', onError)
    ws.push({ type: 'error', data: { code: 'bad_json', message: 'cannot parse' } })
    expect(onError).toHaveBeenCalledWith({ code: 'bad_json', message: 'cannot parse' })
  })

  it('publishes results and histories that answer no request', () => {
    const { socket, ws } = live()
    const onResult = vi.fn()
    const onHistory = vi.fn()
    socket.on('result', onResult)
    socket.on('history', onHistory)
    ws.push({ type: 'result', data: { action: 'closeAllConnections', closed: 3 } })
    ws.push({ type: 'history', data: [] })
    expect(onResult).toHaveBeenCalledWith({ action: 'closeAllConnections', closed: 3 })
    expect(onHistory).toHaveBeenCalledWith([])
  })

  it('rejects pending requests when the socket drops', async () => {
    const { socket, ws } = live()
    const p = socket.request({ action: 'closeAllConnections' })
    ws.drop()
    await expect(p).rejects.toBeInstanceOf(RequestError)
    await expect(p).rejects.toMatchObject({ code: 'disconnected' })
  })

  it('rejects a request at once when not connected', async () => {
    const socket = useSocketStore()
    await expect(socket.request({ action: 'closeAllConnections' })).rejects.toMatchObject({ code: 'disconnected' })
    socket.start('t')
    FakeWebSocket.latest().open() // open, but no hello yet
    expect(socket.send({ action: 'closeAllConnections' })).toBe(false)
  })

  it('times out a request the server never answers', async () => {
    vi.useFakeTimers()
    const { socket } = live()
    const p = socket.request({ action: 'closeAllConnections' })
    const check = expect(p).rejects.toMatchObject({ code: 'timeout' })
    await vi.advanceTimersByTimeAsync(REQUEST_TIMEOUT_MS)
    await check
  })
})

describe('log level', () => {
  it('re-subscribes at the new level without since, leaving logs for one frame so the backlog is replayed', () => {
    const { socket, ws } = live()
    ws.push({ type: 'log', data: { level: 'INFO', message: 'x', seq: 5 } })
    const before = ws.actions.length
    socket.setLogLevel('warn')
    expect(socket.logLevel).toBe('WARN')
    expect(socket.lastLogSeq).toBe(0)
    expect(ws.actions.slice(before)).toEqual([
      { action: 'subscribe', topics: ['traffic', 'connectionsDelta', 'eventBatches'], logLevel: 'WARN' },
      { action: 'subscribe', topics: ['traffic', 'connectionsDelta', 'logs', 'eventBatches'], logLevel: 'WARN' },
    ])
    expect(localStorage.getItem('proxywatch.logLevel')).toBe('WARN')
  })

  it('starts with the level chosen on an earlier visit', () => {
    localStorage.setItem('proxywatch.logLevel', 'ERROR')
    const { ws } = live()
    expect(ws.last('subscribe')?.logLevel).toBe('ERROR')
  })

  it('maps unknown levels to INFO', () => {
    const socket = useSocketStore()
    socket.setLogLevel('LOUD')
    expect(socket.logLevel).toBe('INFO')
  })
})
