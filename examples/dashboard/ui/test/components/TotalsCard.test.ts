import { flushPromises, mount } from '@vue/test-utils'
import { beforeEach, describe, expect, it } from 'vitest'
import TotalsCard from '../../src/components/TotalsCard.vue'
import { formatBytes, formatRate } from '../../src/lib/format'
import { useConnectionsStore } from '../../src/stores/connections'
import { useTrafficStore } from '../../src/stores/traffic'
import { live } from '../helpers'
import { conn, freshView } from '../mount'

beforeEach(freshView)

describe('TotalsCard', () => {
  it('shows the rates, the totals and the live count, falling back to the list when the server does not count', async () => {
    useTrafficStore()
    useConnectionsStore()
    const { ws } = live()
    ws.push({ type: 'connections', data: [conn(1, 'a'), conn(2, 'b')] })
    const w = mount(TotalsCard)
    expect(w.find('[data-testid=live-count]').text()).toBe('2')
    ws.push({ type: 'traffic', data: { up: 2048, down: 4096, upTotal: 10_000, downTotal: 20_000, live: 5, interval: 1000 } })
    await flushPromises()
    expect(w.find('[data-testid=up-rate]').text()).toBe(formatRate(2048))
    expect(w.find('[data-testid=down-rate]').text()).toBe(formatRate(4096))
    expect(w.find('[data-testid=up-total]').text()).toBe(formatBytes(10_000))
    expect(w.find('[data-testid=down-total]').text()).toBe(formatBytes(20_000))
    expect(w.find('[data-testid=live-count]').text()).toBe('5')
    w.unmount()
  })
})
