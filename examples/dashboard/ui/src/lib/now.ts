import { onBeforeUnmount, readonly, ref, type Ref } from 'vue'

const now = ref(Date.now())
let users = 0
let timer: ReturnType<typeof setInterval> | null = null

/**
 * useNow gives a clock that ticks once a second while at least one mounted
 * component uses it (durations of live connections, the reconnect countdown).
 * All users share one timer.
 */
export function useNow(): Readonly<Ref<number>> {
  users++
  if (timer === null) {
    now.value = Date.now()
    timer = setInterval(() => {
      now.value = Date.now()
    }, 1000)
  }
  onBeforeUnmount(() => {
    users--
    if (users === 0 && timer !== null) {
      clearInterval(timer)
      timer = null
    }
  })
  return readonly(now)
}
