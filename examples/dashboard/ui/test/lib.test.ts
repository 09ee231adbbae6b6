import { describe, expect, it, vi } from 'vitest'
import { takeTokenFromURL, socketURL } from '../src/lib/auth'
import { filterRows, sortRows } from '../src/lib/columns'
import { formatBytes, formatDuration, formatRate, niceScale } from '../src/lib/format'
import type { Conn } from '../src/lib/protocol'

describe('format', () => {
  it('prints bytes in binary units', () => {
    expect(formatBytes(0)).toBe('0 B')
    expect(formatBytes(undefined)).toBe('0 B')
    expect(formatBytes(1023)).toBe('1023 B')
    expect(formatBytes(1536)).toBe('1.50 KiB')
    expect(formatBytes(10 * 1024 * 1024)).toBe('10.0 MiB')
    expect(formatBytes(300 * 1024 ** 3)).toBe('300 GiB')
    expect(formatRate(2048)).toBe('2.00 KiB/s')
  })

  it('prints durations', () => {
    expect(formatDuration(850)).toBe('850 ms')
    expect(formatDuration(4200)).toBe('4.2 s')
    expect(formatDuration(185_000)).toBe('3m 05s')
    expect(formatDuration(2 * 3600_000 + 3 * 60_000)).toBe('2h 03m')
    expect(formatDuration(NaN)).toBe('–')
  })
})

function fakeLocation(href: string) {
  const hist = { state: null, replaceState: vi.fn() }
  return { loc: { href } as Location, hist: hist as unknown as History & { replaceState: ReturnType<typeof vi.fn> } }
}

describe('token from the URL', () => {
  it('takes ?token= and removes it from the address bar', () => {
    const { loc, hist } = fakeLocation('http://127.0.0.1:8000/?token=abc&x=1#/logs')
    expect(takeTokenFromURL(loc, hist)).toBe('abc')
    expect(hist.replaceState).toHaveBeenCalledWith(null, '', 'http://127.0.0.1:8000/?x=1#/logs')
  })

  it('takes #token= and removes it', () => {
    const { loc, hist } = fakeLocation('http://127.0.0.1:8000/#token=s%20p')
    expect(takeTokenFromURL(loc, hist)).toBe('s p')
    expect(hist.replaceState).toHaveBeenCalledWith(null, '', 'http://127.0.0.1:8000/')
  })

  it('takes #/logs?token= and keeps the view', () => {
    const { loc, hist } = fakeLocation('http://127.0.0.1:8000/#/logs?token=z')
    expect(takeTokenFromURL(loc, hist)).toBe('z')
    expect(hist.replaceState).toHaveBeenCalledWith(null, '', 'http://127.0.0.1:8000/#/logs')
  })

  it('leaves a URL without a token alone', () => {
    const { loc, hist } = fakeLocation('http://127.0.0.1:8000/#/logs')
    expect(takeTokenFromURL(loc, hist)).toBeNull()
    expect(hist.replaceState).not.toHaveBeenCalled()
  })

  it('builds the socket URL next to the page, wss under https', () => {
    expect(socketURL('t', 'https://dash.example:8443/ui/index.html')).toBe('wss://dash.example:8443/ui/start?token=t')
    expect(socketURL('t', 'http://127.0.0.1:8000/#/logs')).toBe('ws://127.0.0.1:8000/start?token=t')
  })
})

function c(id: number, extra: Partial<Conn>): Conn {
  return { id, method: 'GET', host: '', url: '', remote: '', protocol: 'HTTP', up: 0, down: 0, ...extra }
}

describe('table rows', () => {
  const rows = [
    c(1, { host: 'b.test', down: 50, start: '2026-11-27T10:00:05Z' }),
    c(2, { host: 'A.test', down: 500, start: '2026-11-27T10:00:01Z', protocol: 'HTTPS-Tunnel' }),
    c(3, { host: 'c.test', down: 5, start: '2026-11-27T10:00:03Z', remote: '10.0.0.9:4000' }),
  ]

  it('sorts by any column, numbers as numbers and text case-insensitively', () => {
    expect(sortRows(rows, 'down', 'desc').map((r) => r.id)).toEqual([2, 1, 3])
    expect(sortRows(rows, 'host', 'asc').map((r) => r.id)).toEqual([2, 1, 3])
    // Longest-lived first: the earliest start.
    expect(sortRows(rows, 'duration', 'desc').map((r) => r.id)).toEqual([2, 3, 1])
    expect(sortRows(rows, 'id', 'asc').map((r) => r.id)).toEqual([1, 2, 3])
  })

  it('filters on every word, across the shown fields', () => {
    expect(filterRows(rows, 'tunnel').map((r) => r.id)).toEqual([2])
    expect(filterRows(rows, '10.0.0.9').map((r) => r.id)).toEqual([3])
    expect(filterRows(rows, 'test c.').map((r) => r.id)).toEqual([3])
    expect(filterRows(rows, '  ')).toBe(rows)
  })
})

describe('chart scale', () => {
  it('puts grid lines on round binary figures', () => {
    expect(niceScale(0)).toEqual({ step: 256, top: 1024 })
    expect(niceScale(500 * 1024)).toEqual({ step: 200 * 1024, top: 600 * 1024 })
    expect(niceScale(3 * 1024 * 1024)).toEqual({ step: 1024 * 1024, top: 4 * 1024 * 1024 })
    expect(niceScale(900)).toEqual({ step: 250, top: 1000 })
  })
})
