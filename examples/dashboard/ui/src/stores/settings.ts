import { acceptHMRUpdate, defineStore } from 'pinia'
import { computed, ref, watch } from 'vue'

export type ThemeChoice = 'system' | 'light' | 'dark'

const KEY = 'proxywatch.settings'

interface Saved {
  theme?: ThemeChoice
  confirmCloseAll?: boolean
}

/**
 * useSettingsStore holds the user's preferences, kept in localStorage:
 * the theme (following the system unless chosen) and whether "close all"
 * asks for confirmation.
 */
export const useSettingsStore = defineStore('settings', () => {
  const saved = load()
  /** theme is the user's choice; `dark` is what is in effect. */
  const theme = ref<ThemeChoice>(saved.theme ?? 'system')
  /** confirmCloseAll makes "close all" and "close filtered" ask first. */
  const confirmCloseAll = ref(saved.confirmCloseAll ?? true)

  const media = typeof window !== 'undefined' && window.matchMedia ? window.matchMedia('(prefers-color-scheme: dark)') : null
  const systemDark = ref(media?.matches ?? false)
  media?.addEventListener?.('change', (e) => {
    systemDark.value = e.matches
  })

  const dark = computed(() => (theme.value === 'system' ? systemDark.value : theme.value === 'dark'))

  /** cycleTheme goes system → light → dark → system. */
  function cycleTheme(): void {
    theme.value = theme.value === 'system' ? 'light' : theme.value === 'light' ? 'dark' : 'system'
  }

  watch([theme, confirmCloseAll], () => {
    try {
      localStorage.setItem(KEY, JSON.stringify({ theme: theme.value, confirmCloseAll: confirmCloseAll.value }))
    } catch {
      // not persisted
    }
  })

  return { theme, confirmCloseAll, dark, cycleTheme }
})

function load(): Saved {
  try {
    const v = JSON.parse(localStorage.getItem(KEY) ?? '{}')
    return v && typeof v === 'object' ? v : {}
  } catch {
    return {}
  }
}

if (import.meta.hot) import.meta.hot.accept(acceptHMRUpdate(useSettingsStore, import.meta.hot))
