import { beforeEach, describe, expect, it } from 'vitest'
import { HISTORY_POINTS, useTrafficStore } from '../../src/stores/traffic'
import { FakeWebSocket } from '../fake-websocket'
import { fresh, live } from '../helpers'

beforeEach(fresh)

describe('traffic', () => {
  it('turns bytes per interval into rates, and keeps totals and the live count', () => {
    const traffic = useTrafficStore()
    const { ws } = live()
    ws.push({ type: 'traffic', data: { up: 3000, down: 9000, upTotal: 100000, downTotal: 900000, live: 4, interval: 2000 } })
    expect(traffic.upRate).toBe(1500)
    expect(traffic.downRate).toBe(4500)
    expect(traffic.upTotal).toBe(100000)
    expect(traffic.downTotal).toBe(900000)
    expect(traffic.live).toBe(4)
    expect(traffic.points).toHaveLength(1)
    expect(traffic.points[0]).toMatchObject({ up: 1500, down: 4500 })
  })

  it('uses the interval from hello when a sample does not carry one', () => {
    const traffic = useTrafficStore()
    const { ws } = live('t', { intervals: { traffic: 500, connections: 2000 } })
    ws.push({ type: 'traffic', data: { up: 100, down: 200 } })
    expect(traffic.upRate).toBe(200)
    expect(traffic.downRate).toBe(400)
  })

  it('adds up totals itself for a server that speaks only the seed protocol', () => {
    const traffic = useTrafficStore()
    const { ws } = live()
    ws.push({ type: 'traffic', data: { up: 10, down: 20 } })
    ws.push({ type: 'traffic', data: { up: 5, down: 1 } })
    expect(traffic.upTotal).toBe(15)
    expect(traffic.downTotal).toBe(21)
    expect(traffic.live).toBeNull()
  })

  it('keeps a window of the last 60 points, replacing the array on every sample', () => {
    const traffic = useTrafficStore()
    const { ws } = live()
    const arrays = new Set<unknown>()
    for (let i = 1; i <= 75; i++) {
      ws.push({ type: 'traffic', data: { up: i, down: 2 * i, interval: 1000 } })
      arrays.add(traffic.points)
    }
    expect(HISTORY_POINTS).toBe(60)
    expect(traffic.points).toHaveLength(60)
    expect(traffic.points[0].up).toBe(16)
    expect(traffic.points[59].up).toBe(75)
    expect(traffic.points[59].down).toBe(150)
    // Whole-array replacement: every sample produced a new array.
    expect(arrays.size).toBe(75)
    expect(Object.isFrozen(traffic.points[0])).toBe(true)
    for (let i = 1; i < traffic.points.length; i++) expect(traffic.points[i].t).toBeGreaterThanOrEqual(traffic.points[i - 1].t)
  })

  it('starts afresh after a reconnect, and shows no rate while disconnected', () => {
    const traffic = useTrafficStore()
    const { socket, ws } = live()
    ws.push({ type: 'traffic', data: { up: 1000, down: 1000, upTotal: 5, downTotal: 6, live: 1 } })
    ws.drop()
    expect(traffic.upRate).toBe(0)
    expect(traffic.downRate).toBe(0)
    expect(traffic.points).toHaveLength(1)
    socket.retryNow()
    FakeWebSocket.latest().hello()
    expect(traffic.points).toHaveLength(0)
    expect(traffic.upTotal).toBe(0)
    expect(traffic.live).toBeNull()
  })
})
