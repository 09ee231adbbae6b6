import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Conn, ConnMove, ConnectionsDelta } from '../../src/lib/protocol'
import { EVENT_FLUSH_MS, HISTORY_CAP, RECENTLY_CLOSED_MS, useConnectionsStore } from '../../src/stores/connections'
import { FakeWebSocket } from '../fake-websocket'
import { fresh, live } from '../helpers'

beforeEach(fresh)
afterEach(() => {
  vi.useRealTimers()
})

function conn(id: number, extra: Partial<Conn> = {}): Conn {
  return {
    id,
    method: 'GET',
    host: `host${id}.test`,
    url: `http://host${id}.test/`,
    remote: '127.0.0.1:50000',
    protocol: 'HTTP',
    up: 10 * id,
    down: 100 * id,
    start: '2026-11-27T10:00:00Z',
    upRate: 0,
    downRate: 0,
    status: 0,
    parent: 0,
    ...extra,
  }
}

function closedConn(id: number, end: string, extra: Partial<Conn> = {}): Conn {
  return conn(id, { end, endReason: 'completed', status: 200, ...extra })
}

/** setup connects and answers the getHistory the store sends after hello. */
async function setup(history: Conn[] = []) {
  const store = useConnectionsStore()
  const { socket, ws } = live()
  const req = ws.last('getHistory')
  if (req) ws.push({ type: 'history', data: history, ref: req.ref })
  await drain()
  return { store, socket, ws }
}

/** drain lets promise continuations run (works with fake timers too). */
async function drain(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve()
}

describe('snapshots', () => {
  it('replaces the live list with each connections message', async () => {
    const { store, ws } = await setup()
    const first = [conn(1), conn(2)]
    ws.push({ type: 'connections', data: first })
    expect(store.live.map((c) => c.id)).toEqual([1, 2])
    ws.push({ type: 'connections', data: [conn(2, { down: 5000, downRate: 2500 }), conn(3)] })
    expect(store.live.map((c) => c.id)).toEqual([2, 3])
    expect(store.live[0].down).toBe(5000)
    expect(store.live[0].downRate).toBe(2500)
    expect(store.snapshotAt).toBeGreaterThan(0)
  })

  it('treats a null list as empty', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'connections', data: [conn(1)] })
    ws.push({ type: 'connections', data: null })
    expect(store.live).toEqual([])
  })

  it('does not make the per-tick objects deeply reactive', async () => {
    const { store, ws } = await setup()
    const list = [conn(1)]
    ws.push({ type: 'connections', data: list })
    // A shallowRef hands back the very array and objects, not proxies.
    expect(store.live[0]).not.toHaveProperty('__v_raw')
    expect(store.live.length).toBe(1)
  })
})

/** delta computes the connectionsDelta message that takes `from` to `to`, as the hub does. */
function delta(from: Conn[], to: Conn[]): ConnectionsDelta {
  const before = new Map(from.map((c) => [c.id, c]))
  const after = new Set(to.map((c) => c.id))
  const d: ConnectionsDelta = { full: false, conns: [], moved: [], removed: [] }
  for (const c of to) {
    const o = before.get(c.id)
    if (!o || o.url !== c.url || o.method !== c.method || o.host !== c.host) {
      d.conns.push(c)
      continue
    }
    const m: ConnMove = { id: c.id }
    let movedAny = false
    for (const k of ['up', 'down', 'upRate', 'downRate', 'status'] as const) {
      if (o[k] !== c[k]) {
        m[k] = c[k]
        movedAny = true
      }
    }
    if (movedAny) d.moved.push(m)
  }
  for (const c of from) if (!after.has(c.id)) d.removed.push(c.id)
  return d
}

describe('connection deltas', () => {
  it('starts from the full list, then adds, moves and removes', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'connectionsDelta', data: { full: true, conns: [conn(1), conn(2), conn(3)], moved: [], removed: [] } })
    expect(store.live.map((c) => c.id)).toEqual([1, 2, 3])
    ws.push({
      type: 'connectionsDelta',
      data: { full: false, conns: [conn(4)], moved: [{ id: 2, down: 9999, downRate: 512 }], removed: [1] },
    })
    expect(store.live.map((c) => c.id)).toEqual([2, 3, 4])
    expect(store.live[0]).toEqual({ ...conn(2), down: 9999, downRate: 512 })
    expect(store.snapshotAt).toBeGreaterThan(0)
  })

  it('renders what the full lists of the same moments render', async () => {
    const lists: Conn[][] = [
      [conn(1), conn(2), conn(3)],
      [conn(1, { down: 500, downRate: 250 }), conn(2), conn(3, { status: 200 }), conn(4)],
      [conn(2, { up: 7 }), conn(3, { status: 200, url: 'http://elsewhere/' }), conn(4), conn(5), conn(6)],
      [conn(4), conn(6, { downRate: 1 })],
      [],
      [conn(7)],
    ]
    const a = await setup()
    const shownFull: Conn[][] = []
    for (const l of lists) {
      a.ws.push({ type: 'connections', data: l })
      shownFull.push([...a.store.live])
    }
    fresh()
    const b = await setup()
    b.ws.push({ type: 'connectionsDelta', data: { full: true, conns: lists[0], moved: [], removed: [] } })
    const shownDelta: Conn[][] = [[...b.store.live]]
    for (let i = 1; i < lists.length; i++) {
      b.ws.push({ type: 'connectionsDelta', data: delta(lists[i - 1], lists[i]) })
      shownDelta.push([...b.store.live])
    }
    expect(shownDelta).toEqual(shownFull)
  })

  it('lets a closed event win over a delta that still lists the connection', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'connectionsDelta', data: { full: true, conns: [conn(1), conn(2)], moved: [], removed: [] } })
    ws.push({ type: 'eventBatch', data: [{ event: 'closed', conn: closedConn(1, '2026-11-27T10:00:01Z') }] })
    ws.push({ type: 'connectionsDelta', data: { full: false, conns: [], moved: [{ id: 1, down: 5 }], removed: [] } })
    expect(store.live.map((c) => c.id)).toEqual([2])
    expect(store.closed.map((c) => c.id)).toEqual([1])
  })

  it('ignores a moved entry for an id it does not have', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'connectionsDelta', data: { full: true, conns: [conn(1)], moved: [], removed: [] } })
    ws.push({ type: 'connectionsDelta', data: { full: false, conns: [], moved: [{ id: 99, down: 5 }], removed: [] } })
    expect(store.live).toEqual([conn(1)])
  })

  it('holds deltas while paused and shows the latest list on resume', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'connectionsDelta', data: { full: true, conns: [conn(1), conn(2)], moved: [], removed: [] } })
    store.setPaused(true)
    ws.push({ type: 'connectionsDelta', data: { full: false, conns: [conn(3)], moved: [], removed: [1] } })
    ws.push({ type: 'connectionsDelta', data: { full: false, conns: [], moved: [{ id: 3, up: 1 }], removed: [] } })
    expect(store.live.map((c) => c.id)).toEqual([1, 2])
    expect(store.pending).toBe(2)
    store.setPaused(false)
    expect(store.live.map((c) => c.id)).toEqual([2, 3])
    expect(store.live[1].up).toBe(1)
  })

  it('forgets the list of the previous connection on reconnect', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'connectionsDelta', data: { full: true, conns: [conn(1), conn(2)], moved: [], removed: [] } })
    ws.hello()
    ws.push({ type: 'connectionsDelta', data: { full: false, conns: [conn(3)], moved: [], removed: [] } })
    expect(store.live.map((c) => c.id)).toEqual([3])
  })

  it('ignores a null delta and null arrays', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'connectionsDelta', data: { full: true, conns: [conn(1)], moved: [], removed: [] } })
    ws.push({ type: 'connectionsDelta', data: null })
    ws.push({ type: 'connectionsDelta', data: { full: false, conns: null, moved: null, removed: null } as never })
    expect(store.live.map((c) => c.id)).toEqual([1])
  })
})

describe('event batches', () => {
  it('applies a batch at once, in order', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'connections', data: [conn(1)] })
    ws.push({
      type: 'eventBatch',
      data: [
        { event: 'opened', conn: conn(2) },
        { event: 'opened', conn: conn(3) },
        { event: 'closed', conn: closedConn(2, '2026-11-27T10:00:02Z', { down: 77 }) },
        { event: 'closed', conn: closedConn(1, '2026-11-27T10:00:03Z') },
      ],
    })
    expect(store.live.map((c) => c.id)).toEqual([3])
    expect(store.closed.map((c) => c.id)).toEqual([1, 2])
    expect(store.closed[1].down).toBe(77)
  })

  it('puts a connection sent only as closed (opened and closed within one batch) in history, never live', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'connections', data: [conn(1)] })
    ws.push({ type: 'eventBatch', data: [{ event: 'closed', conn: closedConn(9, '2026-11-27T10:00:09Z', { down: 9 }) }] })
    expect(store.live.map((c) => c.id)).toEqual([1])
    expect(store.closed.map((c) => c.id)).toEqual([9])
    expect(store.closed[0].down).toBe(9)
    // A list made before the close still names it: it stays closed.
    ws.push({ type: 'connections', data: [conn(1), conn(9)] })
    expect(store.live.map((c) => c.id)).toEqual([1])
  })

  it('renders the same as the same events sent one by one', async () => {
    const events = [
      { event: 'opened' as const, conn: conn(5) },
      { event: 'opened' as const, conn: conn(6) },
      { event: 'closed' as const, conn: closedConn(5, '2026-11-27T10:00:05Z') },
      { event: 'opened' as const, conn: conn(7) },
    ]
    const a = await setup()
    a.ws.push({ type: 'connections', data: [conn(1)] })
    for (const data of events) a.ws.push({ type: 'event', data })
    a.store.flush()
    const single = { live: [...a.store.live], closed: [...a.store.closed] }
    fresh()
    const b = await setup()
    b.ws.push({ type: 'connections', data: [conn(1)] })
    b.ws.push({ type: 'eventBatch', data: events })
    expect({ live: [...b.store.live], closed: [...b.store.closed] }).toEqual(single)
  })

  it('lets a closed event in a batch win over a snapshot taken before it', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'connections', data: [conn(1), conn(2)] })
    ws.push({ type: 'eventBatch', data: [{ event: 'closed', conn: closedConn(1, '2026-11-27T10:00:01Z') }] })
    ws.push({ type: 'connections', data: [conn(1), conn(2)] })
    expect(store.live.map((c) => c.id)).toEqual([2])
  })

  it('holds batches while paused and counts their events', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'connections', data: [conn(1)] })
    store.setPaused(true)
    ws.push({ type: 'eventBatch', data: [{ event: 'opened', conn: conn(2) }, { event: 'opened', conn: conn(3) }] })
    expect(store.live.map((c) => c.id)).toEqual([1])
    expect(store.pending).toBe(2)
    store.setPaused(false)
    expect(store.live.map((c) => c.id)).toEqual([1, 2, 3])
    expect(store.pending).toBe(0)
  })

  it('ignores malformed entries and a null batch', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'eventBatch', data: null })
    ws.push({
      type: 'eventBatch',
      data: [null, { event: 'renamed', conn: conn(9) }, { event: 'opened' }, { event: 'opened', conn: conn(4) }] as never,
    })
    expect(store.live.map((c) => c.id)).toEqual([4])
  })
})

describe('events', () => {
  it('adds opened connections and moves closed ones to the history, in batches', async () => {
    vi.useFakeTimers()
    const { store, ws } = await setup()
    ws.push({ type: 'connections', data: [conn(1)] })
    ws.push({ type: 'event', data: { event: 'opened', conn: conn(2) } })
    ws.push({ type: 'event', data: { event: 'opened', conn: conn(3) } })
    expect(store.live.map((c) => c.id)).toEqual([1])
    await vi.advanceTimersByTimeAsync(EVENT_FLUSH_MS)
    expect(store.live.map((c) => c.id)).toEqual([1, 2, 3])

    ws.push({
      type: 'event',
      data: { event: 'closed', conn: closedConn(1, '2026-11-27T10:00:05Z', { endReason: 'closed by API', up: 11, down: 222 }) },
    })
    await vi.advanceTimersByTimeAsync(EVENT_FLUSH_MS)
    expect(store.live.map((c) => c.id)).toEqual([2, 3])
    expect(store.closed).toHaveLength(1)
    expect(store.closed[0]).toMatchObject({ id: 1, endReason: 'closed by API', up: 11, down: 222 })
  })

  it('shows a connection shorter than one push interval in the closed list', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'event', data: { event: 'opened', conn: conn(7) } })
    ws.push({ type: 'event', data: { event: 'closed', conn: closedConn(7, '2026-11-27T10:00:00.3Z', { down: 1234 }) } })
    store.flush()
    expect(store.live).toEqual([])
    expect(store.closed.map((c) => c.id)).toEqual([7])
    expect(store.closed[0].down).toBe(1234)
  })

  it('ignores an opened event for a connection already listed', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'connections', data: [conn(1)] })
    ws.push({ type: 'event', data: { event: 'opened', conn: conn(1, { down: 1 }) } })
    store.flush()
    expect(store.live).toHaveLength(1)
    expect(store.live[0].down).toBe(100)
  })

  it('keeps a closed connection out of a snapshot taken just before it closed', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'connections', data: [conn(1), conn(2)] })
    ws.push({ type: 'event', data: { event: 'closed', conn: closedConn(1, '2026-11-27T10:00:01Z') } })
    store.flush()
    ws.push({ type: 'connections', data: [conn(1), conn(2)] })
    expect(store.live.map((c) => c.id)).toEqual([2])
  })

  it('forgets recently closed ids after a while', async () => {
    vi.useFakeTimers()
    const { store, ws } = await setup()
    ws.push({ type: 'event', data: { event: 'closed', conn: closedConn(1, '2026-11-27T10:00:01Z') } })
    store.flush()
    vi.advanceTimersByTime(RECENTLY_CLOSED_MS + 1)
    // Ids are never reused by one server, so this only matters after a restart.
    ws.push({ type: 'connections', data: [conn(1)] })
    expect(store.live.map((c) => c.id)).toEqual([1])
  })

  it('applies queued events before a snapshot that follows them', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'event', data: { event: 'closed', conn: closedConn(4, '2026-11-27T10:00:01Z') } })
    ws.push({ type: 'connections', data: [conn(4), conn(5)] })
    expect(store.live.map((c) => c.id)).toEqual([5])
    expect(store.closed.map((c) => c.id)).toEqual([4])
  })

  it('ignores malformed and unknown events', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'event', data: { event: 'opened' } })
    ws.push({ type: 'event', data: { event: 'renamed', conn: conn(1) } })
    ws.push({ type: 'event', data: null })
    store.flush()
    expect(store.live).toEqual([])
    expect(store.closed).toEqual([])
  })
})

describe('history', () => {
  it('asks for the server history after hello and lists it newest first', async () => {
    const store = useConnectionsStore()
    const { ws } = live()
    const req = ws.last('getHistory')!
    expect(req).toMatchObject({ action: 'getHistory', limit: HISTORY_CAP })
    ws.push({
      type: 'history',
      ref: req.ref,
      data: [closedConn(1, '2026-11-27T10:00:01Z'), closedConn(2, '2026-11-27T10:00:02Z'), closedConn(3, '2026-11-27T10:00:03Z')],
    })
    await drain()
    expect(store.closed.map((c) => c.id)).toEqual([3, 2, 1])
  })

  it('merges history with closed events without duplicates', async () => {
    const { store, ws } = await setup([closedConn(1, '2026-11-27T10:00:01Z'), closedConn(2, '2026-11-27T10:00:02Z')])
    ws.push({ type: 'event', data: { event: 'closed', conn: closedConn(2, '2026-11-27T10:00:02Z') } })
    ws.push({ type: 'event', data: { event: 'closed', conn: closedConn(3, '2026-11-27T10:00:03Z') } })
    store.flush()
    expect(store.closed.map((c) => c.id)).toEqual([3, 2, 1])
  })

  it('keeps at most HISTORY_CAP closed connections, dropping the oldest', async () => {
    const { store } = await setup()
    const many: Conn[] = []
    for (let i = 1; i <= HISTORY_CAP + 50; i++) many.push(closedConn(i, new Date(Date.UTC(2026, 10, 27, 10, 0, 0, i)).toISOString()))
    store.mergeClosed(many)
    expect(store.closed).toHaveLength(HISTORY_CAP)
    expect(store.closed[0].id).toBe(HISTORY_CAP + 50)
    expect(store.closed.at(-1)!.id).toBe(51)
  })

  it('finds a connection for a log line in the live list, the history, or by asking the server', async () => {
    const { store, ws } = await setup([closedConn(2, '2026-11-27T10:00:02Z')])
    ws.push({ type: 'connections', data: [conn(1)] })
    expect(store.find(1)?.id).toBe(1)
    expect(store.find(2)?.endReason).toBe('completed')
    expect(store.find(3)).toBeUndefined()

    const p = store.lookup(3)
    const req = ws.last('getHistory')!
    ws.push({ type: 'history', ref: req.ref, data: [closedConn(3, '2026-11-27T10:00:03Z', { endReason: 'upstream error' })] })
    expect((await p)?.endReason).toBe('upstream error')
  })
})

describe('pause', () => {
  it('freezes the lists, counts pending updates, and resumes to the latest state', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'connections', data: [conn(1), conn(2)] })
    store.setPaused(true)
    ws.push({ type: 'connections', data: [conn(1, { down: 999 }), conn(2), conn(3)] })
    ws.push({ type: 'event', data: { event: 'closed', conn: closedConn(2, '2026-11-27T10:00:02Z') } })
    ws.push({ type: 'event', data: { event: 'opened', conn: conn(4) } })
    ws.push({ type: 'connections', data: [conn(1, { down: 1000 }), conn(2), conn(3), conn(4)] })
    ws.push({ type: 'event', data: { event: 'opened', conn: conn(5) } })
    store.flush()
    expect(store.pending).toBe(5)
    expect(store.live.map((c) => c.id)).toEqual([1, 2])
    expect(store.live[0].down).toBe(100)
    expect(store.closed).toEqual([])

    store.setPaused(false)
    expect(store.pending).toBe(0)
    // The latest snapshot, without the connection that closed, plus what came after it.
    expect(store.live.map((c) => c.id)).toEqual([1, 3, 4, 5])
    expect(store.live[0].down).toBe(1000)
    expect(store.closed.map((c) => c.id)).toEqual([2])
  })

  it('resumes with only events when no snapshot came meanwhile', async () => {
    const { store, ws } = await setup()
    ws.push({ type: 'connections', data: [conn(1)] })
    store.setPaused(true)
    ws.push({ type: 'event', data: { event: 'opened', conn: conn(2) } })
    ws.push({ type: 'event', data: { event: 'closed', conn: closedConn(1, '2026-11-27T10:00:02Z') } })
    expect(store.pending).toBe(2)
    store.setPaused(false)
    expect(store.live.map((c) => c.id)).toEqual([2])
    expect(store.closed.map((c) => c.id)).toEqual([1])
  })

  it('finds connections held back by the pause', async () => {
    const { store, ws } = await setup()
    store.setPaused(true)
    ws.push({ type: 'connections', data: [conn(9)] })
    expect(store.live).toEqual([])
    expect(store.find(9)?.id).toBe(9)
  })
})

describe('reconnect', () => {
  it('drops the old live list and pending updates, and reloads the history', async () => {
    const { store, socket, ws } = await setup([closedConn(1, '2026-11-27T10:00:01Z')])
    ws.push({ type: 'connections', data: [conn(5)] })
    store.setPaused(true)
    ws.push({ type: 'connections', data: [conn(6)] })
    expect(store.pending).toBe(1)
    ws.drop()
    socket.retryNow()
    const ws2 = FakeWebSocket.latest().hello()
    expect(store.live).toEqual([])
    expect(store.pending).toBe(0)
    const req = ws2.last('getHistory')!
    ws2.push({ type: 'history', ref: req.ref, data: [closedConn(1, '2026-11-27T10:00:01Z'), closedConn(5, '2026-11-27T10:00:09Z')] })
    await drain()
    expect(store.closed.map((c) => c.id)).toEqual([5, 1])
    // Still paused: the new connection's data is held until resume.
    ws2.push({ type: 'connections', data: [conn(7)] })
    store.setPaused(false)
    expect(store.live.map((c) => c.id)).toEqual([7])
  })
})

describe('closing', () => {
  it('closes one connection and reports how many were closed', async () => {
    const { store, ws } = await setup()
    const p = store.closeOne(42)
    const a = ws.last('closeConnection')!
    expect(a).toMatchObject({ action: 'closeConnection', id: 42 })
    ws.push({ type: 'result', ref: a.ref, data: { action: 'closeConnection', closed: 1, ids: [42] } })
    await expect(p).resolves.toBe(1)
  })

  it('closes all', async () => {
    const { store, ws } = await setup()
    const p = store.closeAll()
    const a = ws.last('closeAllConnections')!
    ws.push({ type: 'result', ref: a.ref, data: { action: 'closeAllConnections', closed: 12 } })
    await expect(p).resolves.toBe(12)
  })

  it('closes the filtered rows by id', async () => {
    const { store, ws } = await setup()
    const p = store.closeIds([3, 5, 8])
    const a = ws.last('closeConnections')!
    expect(a).toMatchObject({ action: 'closeConnections', ids: [3, 5, 8] })
    ws.push({ type: 'result', ref: a.ref, data: { action: 'closeConnections', closed: 2, ids: [3, 5] } })
    await expect(p).resolves.toBe(2)
    await expect(store.closeIds([])).resolves.toBe(0)
  })

  it('splits a long id list so no frame exceeds the server read limit', async () => {
    const store = useConnectionsStore()
    const { ws } = live('t', { maxMessageBytes: 4096 })
    const ids = Array.from({ length: 3000 }, (_, i) => 100000 + i)
    const p = store.closeIds(ids)
    const seen: number[] = []
    for (let n = 0; n < 10 && seen.length < ids.length; n++) {
      const a = ws.last('closeConnections')!
      expect(ws.sent.at(-1)!.length).toBeLessThanOrEqual(4096)
      const batch = a.ids as number[]
      seen.push(...batch)
      ws.push({ type: 'result', ref: a.ref, data: { action: 'closeConnections', closed: batch.length, ids: batch } })
      await drain()
    }
    await expect(p).resolves.toBe(3000)
    expect(seen).toEqual(ids)
    expect(ws.actions.filter((a) => a.action === 'closeConnections').length).toBeGreaterThan(1)
  })

  it('fails when the server answers with an error', async () => {
    const { store, ws } = await setup()
    const p = store.closeOne(1)
    const a = ws.last('closeConnection')!
    ws.push({ type: 'error', ref: a.ref, data: { code: 'bad_request', message: 'no id' } })
    await expect(p).rejects.toThrow('no id')
  })
})
