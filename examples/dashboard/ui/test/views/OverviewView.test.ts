import { flushPromises, mount } from '@vue/test-utils'
import { beforeEach, describe, expect, it } from 'vitest'
import { useConnectionsStore } from '../../src/stores/connections'
import { useSettingsStore } from '../../src/stores/settings'
import { useTrafficStore } from '../../src/stores/traffic'
import { useUIStore } from '../../src/stores/ui'
import OverviewView from '../../src/views/OverviewView.vue'
import { live } from '../helpers'
import { conn, freshView, stubs } from '../mount'

beforeEach(freshView)

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
