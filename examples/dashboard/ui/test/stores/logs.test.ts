import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { LOG_CAP, LOG_FLUSH_MS, useLogsStore, type LogLine } from '../../src/stores/logs'
import { useSocketStore } from '../../src/stores/socket'
import { FakeWebSocket } from '../fake-websocket'
import { fresh, live } from '../helpers'

beforeEach(fresh)
afterEach(() => {
  vi.useRealTimers()
})

function rec(seq: number, extra: Record<string, unknown> = {}) {
  return {
    type: 'log',
    data: { level: 'INFO', session: 3, message: `line ${seq}`, time: '2026-11-27T10:30:45.123456789Z', seq, conn: 0, source: 'goproxy', ...extra },
  }
}

function messages(lines: readonly LogLine[]): string[] {
  return lines.map((l) => (l.kind === 'log' ? l.message : `dropped ${l.count}`))
}

describe('log lines', () => {
  it('turns records into lines, in batches', async () => {
    vi.useFakeTimers()
    const logs = useLogsStore()
    const { ws } = live()
    ws.push(rec(1, { level: 'WARN', conn: 42, message: 'dial failed' }))
    ws.push(rec(2, { level: 'warning' }))
    expect(logs.lines).toHaveLength(0)
    await vi.advanceTimersByTimeAsync(LOG_FLUSH_MS)
    expect(logs.lines).toHaveLength(2)
    expect(logs.lines[0]).toMatchObject({
      kind: 'log',
      seq: 1,
      level: 'WARN',
      message: 'dial failed',
      session: 3,
      conn: 42,
      source: 'goproxy',
      time: Date.parse('2026-11-27T10:30:45.123Z'),
    })
    expect(logs.lines[1]).toMatchObject({ level: 'WARN' })
  })

  it('accepts seed-protocol records without seq, conn or source', () => {
    const logs = useLogsStore()
    const { ws } = live()
    ws.push({ type: 'log', data: { level: 'INFO', session: 1, message: 'hello', time: '2026-11-27T10:30:45Z' } })
    ws.push({ type: 'log', data: { level: 'INFO', session: 1, message: 'hello again' } })
    logs.flush()
    expect(messages(logs.lines)).toEqual(['hello', 'hello again'])
    expect(logs.lines[0]).toMatchObject({ seq: 0, conn: 0, source: '' })
  })

  it('ignores a record delivered twice', () => {
    const logs = useLogsStore()
    const { ws } = live()
    ws.push(rec(1))
    ws.push(rec(2))
    ws.push(rec(1))
    logs.flush()
    ws.push(rec(2))
    logs.flush()
    expect(messages(logs.lines)).toEqual(['line 1', 'line 2'])
  })

  it('keeps at most the cap, dropping the oldest lines', () => {
    const logs = useLogsStore()
    const { ws } = live()
    expect(logs.cap).toBe(LOG_CAP)
    for (let i = 1; i <= LOG_CAP + 123; i++) {
      ws.push(rec(i))
      if (i % 1000 === 0) logs.flush()
    }
    logs.flush()
    expect(logs.lines).toHaveLength(LOG_CAP)
    expect(logs.trimmed).toBe(123)
    expect(messages([logs.lines[0]])).toEqual(['line 124'])
    expect(messages([logs.lines[LOG_CAP - 1]])).toEqual([`line ${LOG_CAP + 123}`])
    // A trimmed record may legitimately come back (replay after a level change).
    ws.push(rec(5))
    logs.flush()
    expect(logs.lines).toHaveLength(LOG_CAP)
    expect(messages([logs.lines[LOG_CAP - 1]])).toEqual(['line 5'])
  })

  it('shrinks to a lower cap', () => {
    const logs = useLogsStore()
    const { ws } = live()
    for (let i = 1; i <= 300; i++) ws.push(rec(i))
    logs.flush()
    logs.setCap(100)
    expect(logs.lines).toHaveLength(100)
    expect(messages([logs.lines[0]])).toEqual(['line 201'])
  })

  it('shows dropped records as a line among the others', () => {
    const logs = useLogsStore()
    const { ws } = live()
    ws.push(rec(1))
    ws.push({ type: 'logsDropped', data: { count: 37 } })
    ws.push({ type: 'logsDropped', data: { count: 0 } })
    ws.push(rec(39))
    logs.flush()
    expect(messages(logs.lines)).toEqual(['line 1', 'dropped 37', 'line 39'])
  })

  it('pauses: lines stay, pending counts, resume appends what came', () => {
    const logs = useLogsStore()
    const { ws } = live()
    ws.push(rec(1))
    logs.flush()
    logs.setPaused(true)
    ws.push(rec(2))
    ws.push(rec(3))
    ws.push({ type: 'logsDropped', data: { count: 4 } })
    logs.flush()
    expect(logs.pending).toBe(3)
    expect(messages(logs.lines)).toEqual(['line 1'])
    logs.setPaused(false)
    expect(logs.pending).toBe(0)
    expect(messages(logs.lines)).toEqual(['line 1', 'line 2', 'line 3', 'dropped 4'])
  })

  it('clears the view without asking the server to replay it', async () => {
    vi.useFakeTimers()
    const logs = useLogsStore()
    const { socket, ws } = live()
    ws.push(rec(1))
    ws.push(rec(2))
    logs.flush()
    logs.clear()
    expect(logs.lines).toEqual([])
    expect(socket.lastLogSeq).toBe(2)
    ws.drop()
    socket.retryNow()
    FakeWebSocket.latest().hello({ logSeq: 2 })
    expect(FakeWebSocket.latest().last('subscribe')?.since).toBe(2)
  })

  it('keeps lines across a reconnect and resumes after the last one', () => {
    const logs = useLogsStore()
    const { socket, ws } = live()
    ws.push(rec(1))
    ws.push(rec(2))
    ws.drop()
    socket.retryNow()
    const ws2 = FakeWebSocket.latest().hello({ logSeq: 5 })
    expect(ws2.last('subscribe')?.since).toBe(2)
    ws2.push(rec(3))
    logs.flush()
    expect(messages(logs.lines)).toEqual(['line 1', 'line 2', 'line 3'])
  })

  it('accepts low seqs again after the server restarted', () => {
    const logs = useLogsStore()
    const { socket, ws } = live()
    ws.push(rec(1))
    ws.push(rec(2))
    logs.flush()
    ws.drop()
    socket.retryNow()
    const ws2 = FakeWebSocket.latest().hello({ logSeq: 0 })
    ws2.push(rec(1, { message: 'new process' }))
    logs.flush()
    expect(messages(logs.lines)).toEqual(['line 1', 'line 2', 'new process'])
  })
})

describe('level filter', () => {
  it('is applied on the server: changing it re-subscribes and restarts from the backlog', () => {
    const logs = useLogsStore()
    const socket = useSocketStore()
    const { ws } = live()
    ws.push(rec(1, { level: 'INFO' }))
    ws.push(rec(2, { level: 'ERROR' }))
    logs.flush()
    logs.setLevel('ERROR')
    expect(logs.level).toBe('ERROR')
    expect(socket.logLevel).toBe('ERROR')
    expect(ws.last('subscribe')).toEqual({
      action: 'subscribe',
      topics: ['traffic', 'connectionsDelta', 'logs', 'eventBatches'],
      logLevel: 'ERROR',
    })
    expect(logs.lines).toEqual([])
    // An INFO record already on its way is not shown; the replayed ERROR is.
    ws.push(rec(3, { level: 'INFO' }))
    ws.push({ type: 'subscribed', data: { topics: ['traffic', 'connectionsDelta', 'logs', 'eventBatches'], logLevel: 'ERROR' } })
    ws.push(rec(2, { level: 'ERROR' }))
    logs.flush()
    expect(messages(logs.lines)).toEqual(['line 2'])
  })
})
