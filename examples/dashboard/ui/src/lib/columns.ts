import type { Conn } from './protocol'
import { parseTime } from './format'

export type Mode = 'live' | 'closed'

export type ColKey =
  | 'id'
  | 'protocol'
  | 'method'
  | 'host'
  | 'url'
  | 'remote'
  | 'up'
  | 'down'
  | 'upRate'
  | 'downRate'
  | 'duration'
  | 'status'
  | 'endReason'
  | 'end'

export interface Column {
  key: ColKey
  label: string
  /** CSS grid track. */
  width: string
  numeric?: boolean
}

const common: Column[] = [
  { key: 'id', label: 'ID', width: '68px', numeric: true },
  { key: 'protocol', label: 'Protocol', width: '116px' },
  { key: 'method', label: 'Method', width: '72px' },
  { key: 'host', label: 'Host', width: 'minmax(120px, 1.2fr)' },
  { key: 'url', label: 'URL', width: 'minmax(150px, 2fr)' },
  { key: 'remote', label: 'Client', width: '148px' },
  { key: 'up', label: 'Up', width: '82px', numeric: true },
  { key: 'down', label: 'Down', width: '82px', numeric: true },
]

/** COLUMNS lists the table's columns for each mode, in display order. */
export const COLUMNS: Record<Mode, Column[]> = {
  live: [
    ...common,
    { key: 'upRate', label: 'Up/s', width: '92px', numeric: true },
    { key: 'downRate', label: 'Down/s', width: '92px', numeric: true },
    { key: 'duration', label: 'Duration', width: '80px', numeric: true },
    { key: 'status', label: 'Status', width: '58px', numeric: true },
  ],
  closed: [
    ...common,
    { key: 'duration', label: 'Duration', width: '80px', numeric: true },
    { key: 'status', label: 'Status', width: '58px', numeric: true },
    { key: 'endReason', label: 'End reason', width: '128px' },
    { key: 'end', label: 'Ended', width: '100px', numeric: true },
  ],
}

/** startMs and endMs read the RFC 3339 times (NaN when absent). */
export function startMs(c: Conn): number {
  return parseTime(c.start)
}

export function endMs(c: Conn): number {
  return parseTime(c.end)
}

/** durationMs is how long a connection has lived (live: until now) or lived (closed). */
export function durationMs(c: Conn, now: number): number {
  const s = startMs(c)
  if (Number.isNaN(s)) return NaN
  const e = c.end ? endMs(c) : now
  return Number.isNaN(e) ? NaN : Math.max(0, e - s)
}

function sortValue(c: Conn, key: ColKey): number | string {
  switch (key) {
    case 'id':
    case 'up':
    case 'down':
      return c[key] ?? 0
    case 'upRate':
    case 'downRate':
    case 'status':
      return c[key] ?? 0
    case 'duration': {
      // Live: a longer duration is an earlier start; closed: end minus start.
      const s = startMs(c)
      if (!c.end) return Number.isNaN(s) ? 0 : -s
      const e = endMs(c)
      return Number.isNaN(s) || Number.isNaN(e) ? 0 : e - s
    }
    case 'end': {
      const e = endMs(c)
      return Number.isNaN(e) ? 0 : e
    }
    case 'remote':
    case 'host':
    case 'url':
    case 'method':
    case 'protocol':
    case 'endReason':
      return (c[key] ?? '').toLowerCase()
  }
}

/** sortRows returns a sorted copy; ties are broken by id so rows do not jump between ticks. */
export function sortRows(rows: readonly Conn[], key: ColKey, dir: 'asc' | 'desc'): Conn[] {
  const sign = dir === 'asc' ? 1 : -1
  const keyed = rows.map((c) => ({ c, v: sortValue(c, key) }))
  keyed.sort((a, b) => {
    if (a.v < b.v) return -sign
    if (a.v > b.v) return sign
    return (a.c.id - b.c.id) * sign
  })
  return keyed.map((k) => k.c)
}

/**
 * filterRows keeps the rows where every word of the query occurs (case
 * insensitive) in one of the shown text fields or the id/status.
 */
export function filterRows(rows: readonly Conn[], query: string): readonly Conn[] {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean)
  if (words.length === 0) return rows
  return rows.filter((c) => {
    const hay = `#${c.id} ${c.protocol} ${c.method} ${c.host} ${c.url} ${c.remote} ${c.status ?? ''} ${c.endReason ?? ''}`.toLowerCase()
    return words.every((w) => hay.includes(w))
  })
}
