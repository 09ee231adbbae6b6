import { flushPromises, mount } from '@vue/test-utils'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import ConnTable from '../src/components/ConnTable.vue'
import type { Conn } from '../src/lib/protocol'
import { useConnectionsStore } from '../src/stores/connections'
import { useLogsStore } from '../src/stores/logs'
import { useSettingsStore } from '../src/stores/settings'
import { useTrafficStore } from '../src/stores/traffic'
import { useUIStore } from '../src/stores/ui'
import LogsView from '../src/views/LogsView.vue'
import OverviewView from '../src/views/OverviewView.vue'
import { fresh, live } from './helpers'

beforeEach(() => {
  fresh()
  // Chart.js needs a 2D canvas, which happy-dom does not draw; the chart is
  // covered by the browser tests.
  vi.spyOn(console, 'error').mockImplementation(() => {})
})

const stubs = { global: { stubs: { TrafficChart: true } }, attachTo: document.body }

/** sized gives every element a client area, so the virtualizer sees a viewport. */
function sized(height: number): void {
  let proto: object | null = HTMLElement.prototype
  while (proto && !Object.getOwnPropertyDescriptor(proto, 'clientHeight')) proto = Object.getPrototypeOf(proto)
  if (!proto) throw new Error('no clientHeight getter')
  vi.spyOn(proto as HTMLElement, 'clientHeight', 'get').mockReturnValue(height)
  vi.spyOn(proto as HTMLElement, 'clientWidth', 'get').mockReturnValue(1200)
}

function conn(id: number, host: string): Conn {
  return { id, method: 'GET', host, url: `http://${host}/`, remote: '127.0.0.1:1', protocol: 'HTTP', up: 0, down: id, start: '2026-11-27T10:00:00Z' }
}

describe('ConnTable', () => {
  it('puts only a window of 10,000 rows in the DOM', async () => {
    sized(800)
    const rows = Array.from({ length: 10_000 }, (_, i) => conn(i + 1, `h${i}.test`))
    const w = mount(ConnTable, { props: { rows, mode: 'live', sortKey: 'id', sortDir: 'desc', empty: '' }, attachTo: document.body })
    await flushPromises()
    const rendered = w.findAll('[data-id]').length
    expect(rendered).toBeGreaterThan(0)
    expect(rendered).toBeLessThan(100)
    w.unmount()
  })
})

describe('Overview', () => {
  it('closes the filtered rows by id, after confirmation', async () => {
    useTrafficStore()
    const conns = useConnectionsStore()
    useUIStore()
    const { ws } = live()
    ws.push({ type: 'connections', data: [conn(1, 'a.example'), conn(2, 'b.other'), conn(3, 'c.example')] })
    const w = mount(OverviewView, stubs)
    await w.find('[data-testid=conn-search]').setValue('example')
    expect(w.find('[data-testid=conn-matches]').text()).toBe('2 of 3')
    await w.find('[data-testid=close-filtered]').trigger('click')
    await w.find('[data-testid=confirm-ok]').trigger('click')
    const a = ws.last('closeConnections')!
    expect([...(a.ids as number[])].sort()).toEqual([1, 3])
    ws.push({ type: 'result', ref: a.ref, data: { action: 'closeConnections', closed: 2, ids: [1, 3] } })
    await flushPromises()
    expect(useUIStore().toasts.at(-1)?.text).toBe('Closed 2 connections')
    expect(conns.live).toHaveLength(3) // the next snapshot or closed events remove them
    w.unmount()
  })

  it('closes all without asking once "don\'t ask again" was chosen', async () => {
    useTrafficStore()
    useConnectionsStore()
    const settings = useSettingsStore()
    const { ws } = live()
    ws.push({ type: 'connections', data: [conn(1, 'a.example')] })
    const w = mount(OverviewView, stubs)
    await w.find('[data-testid=close-all]').trigger('click')
    await w.find('[data-testid=confirm-dont-ask]').setValue(true)
    await w.find('[data-testid=confirm-ok]').trigger('click')
    expect(ws.actions.filter((x) => x.action === 'closeAllConnections')).toHaveLength(1)
    expect(settings.confirmCloseAll).toBe(false)
    await flushPromises()
    await w.find('[data-testid=close-all]').trigger('click')
    expect(w.find('[data-testid=confirm]').exists()).toBe(false)
    expect(ws.actions.filter((x) => x.action === 'closeAllConnections')).toHaveLength(2)
    w.unmount()
  })

  it('shows how many updates are pending while paused', async () => {
    useTrafficStore()
    useConnectionsStore()
    const { ws } = live()
    const w = mount(OverviewView, stubs)
    await w.find('[data-testid=conn-pause]').trigger('click')
    ws.push({ type: 'connections', data: [conn(1, 'a')] })
    ws.push({ type: 'connections', data: [conn(1, 'a'), conn(2, 'b')] })
    await flushPromises()
    expect(w.find('[data-testid=conn-pending]').text()).toBe('2')
    await w.find('[data-testid=conn-pause]').trigger('click')
    expect(w.find('[data-testid=conn-pending]').exists()).toBe(false)
    w.unmount()
  })
})

describe('Logs', () => {
  it('changes the server-side level from the select, and opens a line\'s connection', async () => {
    sized(600)
    const logs = useLogsStore()
    const ui = useUIStore()
    useConnectionsStore()
    const { ws } = live()
    ws.push({ type: 'log', data: { level: 'WARN', message: 'upstream reset', seq: 1, conn: 42, session: 7, time: '2026-11-27T10:00:00Z' } })
    logs.flush()
    const w = mount(LogsView, stubs)
    await w.find('[data-testid=log-level]').setValue('ERROR')
    expect(ws.last('subscribe')?.logLevel).toBe('ERROR')
    expect(logs.lines).toHaveLength(0)

    ws.push({ type: 'log', data: { level: 'ERROR', message: 'dial failed', seq: 2, conn: 42, time: '2026-11-27T10:00:01Z' } })
    logs.flush()
    await flushPromises()
    const link = w.find('[data-testid=log-conn]')
    expect(link.text()).toBe('#42')
    await link.trigger('click')
    expect(ui.detailId).toBe(42)
    w.unmount()
  })
})
