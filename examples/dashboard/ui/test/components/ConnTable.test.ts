import { flushPromises, mount } from '@vue/test-utils'
import { beforeEach, describe, expect, it } from 'vitest'
import ConnTable from '../../src/components/ConnTable.vue'
import { conn, freshView, sized } from '../mount'

beforeEach(freshView)

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
