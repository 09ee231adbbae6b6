// Human-readable numbers. Binary units (KiB, MiB) because byte counts on a
// proxy are compared with file sizes, which tools print in binary units.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

/** formatBytes prints 1536 as "1.5 KiB"; three significant digits at most. */
export function formatBytes(n: number | undefined | null): string {
  if (n == null || !Number.isFinite(n) || n <= 0) return '0 B'
  let i = 0
  let v = n
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024
    i++
  }
  if (i === 0) return `${Math.round(v)} B`
  const digits = v >= 100 ? 0 : v >= 10 ? 1 : 2
  return `${v.toFixed(digits)} ${UNITS[i]}`
}

/** formatRate prints a bytes-per-second figure as "1.5 KiB/s". */
export function formatRate(n: number | undefined | null): string {
  return `${formatBytes(n)}/s`
}

/** formatDuration prints milliseconds as "850 ms", "4.2 s", "3m 05s", "2h 03m". */
export function formatDuration(ms: number | undefined | null): string {
  if (ms == null || !Number.isFinite(ms) || ms < 0) return '–'
  if (ms < 1000) return `${Math.round(ms)} ms`
  const s = ms / 1000
  if (s < 60) return `${s.toFixed(1)} s`
  const total = Math.floor(s)
  const h = Math.floor(total / 3600)
  const m = Math.floor((total % 3600) / 60)
  const sec = total % 60
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`
  return `${m}m ${String(sec).padStart(2, '0')}s`
}

/** parseTime turns an RFC 3339 string into epoch milliseconds (NaN if absent). */
export function parseTime(s: string | undefined | null): number {
  if (!s) return NaN
  return Date.parse(s)
}

/** formatClock prints local wall-clock time with milliseconds: "10:30:45.123". */
export function formatClock(ms: number): string {
  if (!Number.isFinite(ms)) return '--:--:--'
  const d = new Date(ms)
  const p = (n: number, w = 2) => String(n).padStart(w, '0')
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`
}

/** formatCount prints 12345 as "12,345". */
export function formatCount(n: number): string {
  return n.toLocaleString('en-US')
}

/**
 * niceScale picks the y axis top and step in binary units, so that the grid
 * lines fall on round numbers of KiB/s or MiB/s rather than on round numbers
 * of bytes (195 KiB/s).
 */
export function niceScale(max: number): { step: number; top: number } {
  if (!(max > 0)) return { step: 256, top: 1024 }
  let unit = 1
  while (max / unit >= 1024) unit *= 1024
  const raw = max / unit / 4
  const mag = 10 ** Math.floor(Math.log10(raw))
  const norm = raw / mag
  const nice = norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10
  const step = nice * mag * unit
  return { step, top: Math.ceil((max * 1.05) / step) * step }
}
