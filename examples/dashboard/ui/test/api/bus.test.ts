import { describe, expect, it, vi } from 'vitest'
import { MessageBus } from '../../src/api/bus'

describe('MessageBus', () => {
  it('calls the handlers of a name in the order they registered, and no others', () => {
    const bus = new MessageBus()
    const calls: string[] = []
    bus.on('traffic', (d) => calls.push(`a ${d.up}`))
    bus.on('traffic', (d) => calls.push(`b ${d.up}`))
    bus.on('log', () => calls.push('log'))
    bus.emit('traffic', { up: 1, down: 0 })
    expect(calls).toEqual(['a 1', 'b 1'])
  })

  it('lets a handler unsubscribe while others keep getting data, also past one that throws', () => {
    const bus = new MessageBus()
    const spy = vi.spyOn(console, 'error').mockImplementation(() => {})
    const good = vi.fn()
    const off = bus.on('disconnected', () => {
      throw new Error('broken')
    })
    bus.on('disconnected', good)
    bus.emit('disconnected', { code: 1006, reason: '' })
    expect(spy).toHaveBeenCalledOnce()
    off()
    bus.emit('disconnected', { code: 1000, reason: 'bye' })
    expect(spy).toHaveBeenCalledOnce()
    expect(good).toHaveBeenCalledTimes(2)
  })
})
