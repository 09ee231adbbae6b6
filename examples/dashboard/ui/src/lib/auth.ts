// The dashboard secret: where it comes from, where it is kept, how it is
// checked. The server prints a URL with `?token=SECRET`; the UI reads it once,
// keeps it in localStorage, and removes it from the address bar so it does not
// linger in screenshots or the history list.

export const TOKEN_KEY = 'proxywatch.token'

/**
 * takeTokenFromURL returns the `token` parameter of the page URL (query or
 * fragment, `#token=` or `#/logs?token=`) and removes it from the visible URL
 * with history.replaceState. It returns null when there is none.
 */
export function takeTokenFromURL(loc: Location = window.location, hist: History = window.history): string | null {
  const url = new URL(loc.href)
  let token: string | null = null
  if (url.searchParams.has('token')) {
    token = url.searchParams.get('token')
    url.searchParams.delete('token')
  }
  let hash = url.hash.replace(/^#/, '')
  const q = hash.indexOf('?')
  const hashPath = q >= 0 ? hash.slice(0, q) : hash.includes('=') ? '' : hash
  const hashQuery = q >= 0 ? hash.slice(q + 1) : hash.includes('=') ? hash : ''
  if (hashQuery) {
    const hp = new URLSearchParams(hashQuery)
    if (hp.has('token')) {
      token = token ?? hp.get('token')
      hp.delete('token')
      const rest = hp.toString()
      hash = hashPath + (rest ? `?${rest}` : '')
      url.hash = hash ? `#${hash}` : ''
    }
  }
  if (token !== null) {
    // An empty fragment leaves a bare '#'; strip it for a clean address.
    const clean = url.toString().replace(/#$/, '')
    hist.replaceState(hist.state, '', clean)
  }
  return token || null
}

/** loadToken returns the secret kept from an earlier visit, or null. */
export function loadToken(): string | null {
  try {
    return localStorage.getItem(TOKEN_KEY) || null
  } catch {
    return null
  }
}

/** saveToken keeps the secret for the next visit; null forgets it. */
export function saveToken(token: string | null): void {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token)
    else localStorage.removeItem(TOKEN_KEY)
  } catch {
    // Private mode or storage disabled: the secret lives for this page only.
  }
}

/** AuthCheck is what the server said about a secret. */
export type AuthCheck = 'ok' | 'refused' | 'unreachable'

/**
 * checkToken asks the server whether the secret is right. A failed WebSocket
 * upgrade gives JavaScript no status code, so after a socket closes before
 * `hello` the UI calls `GET auth/check` with `Authorization: Bearer` to tell a
 * wrong secret (401) from a server that is down (network error, 5xx).
 */
export async function checkToken(token: string, base: string = window.location.href): Promise<AuthCheck> {
  try {
    const res = await fetch(new URL('auth/check', base), {
      headers: { Authorization: `Bearer ${token}` },
      cache: 'no-store',
      credentials: 'omit',
    })
    if (res.status === 401 || res.status === 403) return 'refused'
    if (res.ok) return 'ok'
    return 'unreachable'
  } catch {
    return 'unreachable'
  }
}

/** socketURL is the hub endpoint next to the page: ws(s)://host/<prefix>/start?token=. */
export function socketURL(token: string, base: string = window.location.href): string {
  const u = new URL('start', base)
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:'
  u.hash = ''
  u.search = ''
  u.searchParams.set('token', token)
  return u.toString()
}
