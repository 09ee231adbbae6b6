import { acceptHMRUpdate, defineStore } from 'pinia'
import { ref, shallowRef } from 'vue'
import type { Traffic } from '../lib/protocol'
import { useSocketStore } from './socket'

/** TrafficPoint is one chart point: rates in bytes per second at time t (epoch ms). */
export interface TrafficPoint {
  readonly t: number
  readonly up: number
  readonly down: number
}

/** HISTORY_POINTS is the chart window: 60 samples, one minute at the default 1 s interval. */
export const HISTORY_POINTS = 60

/**
 * useTrafficStore keeps the global traffic figures: the last minute of
 * up/down rates for the chart, the current rates, totals and the number of
 * live connections. `points` is replaced as a whole on every sample (a
 * shallowRef over immutable points), never mutated in place.
 */
export const useTrafficStore = defineStore('traffic', () => {
  const socket = useSocketStore()

  /** points is the rate history, oldest first, at most HISTORY_POINTS long. */
  const points = shallowRef<readonly TrafficPoint[]>([])
  /** upRate and downRate are the latest rates in bytes per second. */
  const upRate = ref(0)
  const downRate = ref(0)
  /** upTotal and downTotal are the server's totals since it started. */
  const upTotal = ref(0)
  const downTotal = ref(0)
  /** live is the number of live connections the server reported; null if it does not say. */
  const live = ref<number | null>(null)

  function add(d: Traffic, now = Date.now()): void {
    const interval = d.interval && d.interval > 0 ? d.interval : (socket.hello?.intervals?.traffic ?? 1000)
    const up = ((d.up ?? 0) * 1000) / interval
    const down = ((d.down ?? 0) * 1000) / interval
    upRate.value = up
    downRate.value = down
    // A server that only speaks the seed protocol sends no totals: add up.
    upTotal.value = typeof d.upTotal === 'number' ? d.upTotal : upTotal.value + (d.up ?? 0)
    downTotal.value = typeof d.downTotal === 'number' ? d.downTotal : downTotal.value + (d.down ?? 0)
    if (typeof d.live === 'number') live.value = d.live
    const next = points.value.length >= HISTORY_POINTS ? points.value.slice(-(HISTORY_POINTS - 1)) : points.value.slice()
    next.push(Object.freeze({ t: now, up, down }))
    points.value = next
  }

  /** reset forgets everything (after a reconnect the old figures would be stale). */
  function reset(): void {
    points.value = []
    upRate.value = 0
    downRate.value = 0
    upTotal.value = 0
    downTotal.value = 0
    live.value = null
  }

  socket.on('traffic', (d) => add(d))
  socket.on('connected', () => reset())
  socket.on('disconnected', () => {
    upRate.value = 0
    downRate.value = 0
  })

  return { points, upRate, downRate, upTotal, downTotal, live, add, reset }
})

if (import.meta.hot) import.meta.hot.accept(acceptHMRUpdate(useTrafficStore, import.meta.hot))
