import { onBeforeUnmount, readonly, ref, type Ref } from 'vue'

/** PHONE is the layout breakpoint the stylesheets use for phone-sized screens. */
export const PHONE = '(max-width: 640px)'

/** useMedia tracks a CSS media query while the calling component is mounted. */
export function useMedia(query: string): Readonly<Ref<boolean>> {
  const mql = typeof window !== 'undefined' && window.matchMedia ? window.matchMedia(query) : null
  const matches = ref(mql?.matches ?? false)
  const onChange = (e: MediaQueryListEvent) => {
    matches.value = e.matches
  }
  mql?.addEventListener?.('change', onChange)
  onBeforeUnmount(() => mql?.removeEventListener?.('change', onChange))
  return readonly(matches)
}
