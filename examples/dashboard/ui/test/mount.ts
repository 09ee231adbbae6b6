import { vi } from 'vitest'
import type { Conn } from '../src/lib/protocol'
import { fresh } from './helpers'

/**
 * freshView is fresh for component tests. Chart.js needs a 2D canvas, which
 * happy-dom does not draw; the chart is covered by the browser tests.
 */
export function freshView(): void {
  fresh()
  vi.spyOn(console, 'error').mockImplementation(() => {})
}

/** stubs are the mount options of a view: no chart, attached to the page. */
export const stubs = { global: { stubs: { TrafficChart: true } }, attachTo: document.body }

/** sized gives every element a client area, so the virtualizer sees a viewport. */
export function sized(height: number): void {
  let proto: object | null = HTMLElement.prototype
  while (proto && !Object.getOwnPropertyDescriptor(proto, 'clientHeight')) proto = Object.getPrototypeOf(proto)
  if (!proto) throw new Error('no clientHeight getter')
  vi.spyOn(proto as HTMLElement, 'clientHeight', 'get').mockReturnValue(height)
  vi.spyOn(proto as HTMLElement, 'clientWidth', 'get').mockReturnValue(1200)
}

/** conn is a live connection to host. */
export function conn(id: number, host: string): Conn {
  return { id, method: 'GET', host, url: `http://${host}/`, remote: '127.0.0.1:1', protocol: 'HTTP', up: 0, down: id, start: '2026-11-27T10:00:00Z' }
}
