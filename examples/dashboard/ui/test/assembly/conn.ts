import type { Conn } from '../../src/lib/protocol'

/** conn is a connection entry with the fields the assembly functions look at. */
export function conn(id: number, extra: Partial<Conn> = {}): Conn {
  return { id, method: 'GET', host: `h${id}.test`, url: `http://h${id}.test/`, remote: '127.0.0.1:1', protocol: 'HTTP', up: id, down: 10 * id, ...extra }
}
