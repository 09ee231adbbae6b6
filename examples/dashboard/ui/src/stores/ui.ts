import { acceptHMRUpdate, defineStore } from 'pinia'
import { ref, shallowRef } from 'vue'
import { useSocketStore } from './socket'

export type View = 'overview' | 'logs'

export interface Toast {
  readonly id: number
  readonly text: string
  readonly kind: 'info' | 'error'
}

/**
 * useUIStore holds view state shared across components: which page is shown
 * (kept in the URL fragment, `#/logs`), the connection shown in the detail
 * panel, and short notices ("Closed 3 connections").
 */
export const useUIStore = defineStore('ui', () => {
  const socket = useSocketStore()

  const view = ref<View>(viewFromHash())
  /** detailId is the connection shown in the detail panel, or null. */
  const detailId = ref<number | null>(null)
  const toasts = shallowRef<readonly Toast[]>([])
  let nextToast = 1

  function setView(v: View): void {
    view.value = v
    const hash = v === 'overview' ? '' : `#/${v}`
    if (typeof window !== 'undefined' && window.location.hash !== hash) {
      history.replaceState(history.state, '', hash || window.location.pathname + window.location.search)
    }
  }

  function syncFromHash(): void {
    view.value = viewFromHash()
  }

  function showConnection(id: number | null): void {
    detailId.value = id
  }

  function notify(text: string, kind: Toast['kind'] = 'info', ms = 4000): void {
    const t = { id: nextToast++, text, kind }
    toasts.value = [...toasts.value.slice(-3), t]
    setTimeout(() => dismiss(t.id), ms)
  }

  function dismiss(id: number): void {
    toasts.value = toasts.value.filter((t) => t.id !== id)
  }

  // Errors that answer no pending request (a request's own error goes to its caller).
  socket.on('error', (e) => notify(`Server: ${e?.message || e?.code || 'error'}`, 'error', 6000))

  return { view, detailId, toasts, setView, syncFromHash, showConnection, notify, dismiss }
})

function viewFromHash(): View {
  if (typeof window === 'undefined') return 'overview'
  return window.location.hash.startsWith('#/logs') ? 'logs' : 'overview'
}

if (import.meta.hot) import.meta.hot.accept(acceptHMRUpdate(useUIStore, import.meta.hot))
