import { flushPromises, mount } from '@vue/test-utils'
import { beforeEach, describe, expect, it } from 'vitest'
import { useConnectionsStore } from '../../src/stores/connections'
import { useLogsStore } from '../../src/stores/logs'
import { useUIStore } from '../../src/stores/ui'
import LogsView from '../../src/views/LogsView.vue'
import { live } from '../helpers'
import { sized, freshView, stubs } from '../mount'

beforeEach(freshView)

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
