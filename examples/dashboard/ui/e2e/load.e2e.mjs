// The dashboard with thousands of live connections: a separate process
// (loadclient, in Go) holds N real downloads open through the real proxy, each
// moving a few bytes a second, and the test measures the page in chromium:
// frame times while idle and while scrolling the table, the time from a
// `connections` message to the end of its handler, of Vue's render and of
// the next paint, long tasks, and how long sorting and searching take. The
// figures are printed and written to test-results/load.json; they are
// measurements, not assertions (this machine's speed varies with what else
// runs on it). What is asserted is behaviour: all N show up, only a window of
// rows is in the DOM, the search finds its quarter, and "Close all" really
// ends every download.
//
//   npm run e2e:load     (this file alone; npm run e2e runs it after the others)
//
// N is 9000 by default (E2E_LOAD_CONNS sets it): each connection costs the
// proxy two sockets, and the open-file limit here is 20,000 per process.

import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { after, before, test } from 'node:test'
import { artifact, buildDashboard, launchBrowser, parseBytes, parseCount, repoRoot, startDashboard, tempDir, waitFor } from './harness.mjs'

/**
 * defaultConns is 9000, or fewer where the hard open-file limit is lower: the
 * proxy and the load client each hold two sockets per connection (Go
 * programs raise their soft limit to the hard one by themselves).
 */
function defaultConns() {
  const hard = spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout?.trim()
  if (!hard || hard === 'unlimited') return 9000
  const n = Math.floor((Number(hard) - 1000) / 2)
  return Number.isFinite(n) ? Math.max(100, Math.min(9000, n)) : 9000
}

const N = Number(process.env.E2E_LOAD_CONNS || defaultConns())
const TOKEN = `load-${randomBytes(9).toString('hex')}`

let tmp, dash, browser, load

before(async () => {
  tmp = tempDir()
  const bin = buildDashboard(tmp.dir)
  const lc = path.join(tmp.dir, 'loadclient')
  const res = spawnSync('go', ['build', '-o', lc, './examples/dashboard/ui/e2e/loadclient'], { cwd: repoRoot, encoding: 'utf8' })
  if (res.status !== 0) throw new Error(`go build loadclient: ${res.stderr || res.error?.message}`)
  dash = await startDashboard(bin, { token: TOKEN })
  browser = await launchBrowser()
  load = { bin: lc }
})

after(async () => {
  const proc = load?.proc
  if (proc && proc.exitCode === null && proc.signalCode === null) {
    const exited = once(proc, 'exit')
    proc.stdin.end() // the load client's signal to close everything and exit
    const t = setTimeout(() => proc.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(t)
  }
  await browser?.close()
  await dash?.stop()
  tmp?.remove()
})

/**
 * startLoad runs the load client and follows its output: ready resolves with
 * the seconds it took to open every tunnel; closed() is the last count of
 * tunnels the proxy ended.
 */
function startLoad(n) {
  const proc = spawn(load.bin, ['-proxy', dash.proxy, '-n', String(n)], { stdio: ['pipe', 'pipe', 'pipe'] })
  let closed = 0
  let upstreams = []
  let stderr = ''
  let onReady, onFail
  const ready = new Promise((resolve, reject) => {
    onReady = resolve
    onFail = reject
  })
  createInterface({ input: proc.stdout }).on('line', (line) => {
    const [word, a, b] = line.split(' ')
    if (word === 'ready') onReady({ opened: Number(a), seconds: Number(b) })
    if (word === 'closed') closed = Number(a)
    if (word === 'upstreams') upstreams = line.replace(/^upstreams \[|\]$/g, '').split(' ')
  })
  proc.stderr.setEncoding('utf8')
  proc.stderr.on('data', (s) => (stderr += s))
  proc.on('exit', (code) => onFail(new Error(`loadclient exited with ${code} before it was ready: ${stderr}`)))
  load.proc = proc
  return { proc, ready, closed: () => closed, upstreams: () => upstreams }
}

/**
 * instrument runs in the page before its own scripts. It wraps the handler
 * the app sets as the socket's onmessage and times every `connections`
 * message: the handler (JSON.parse and the stores), Vue's render (the
 * microtask queued after the handler's own), and the next frame's paint. It
 * also records long tasks.
 */
function instrument() {
  const pw = { msgs: [], longtasks: [] }
  window.__pw = pw
  const Native = window.WebSocket
  window.WebSocket = class extends Native {
    set onmessage(fn) {
      if (!fn) {
        super.onmessage = null
        return
      }
      super.onmessage = (ev) => {
        if (typeof ev.data !== 'string' || !ev.data.startsWith('{"type":"connections"')) return fn(ev)
        const rec = { at: performance.now(), bytes: ev.data.length }
        pw.msgs.push(rec)
        fn(ev)
        rec.handler = performance.now() - rec.at
        // Vue queued its render while the handler ran: this microtask comes after it.
        queueMicrotask(() => (rec.render = performance.now() - rec.at))
        requestAnimationFrame(() => {
          const ch = new MessageChannel()
          ch.port1.onmessage = () => (rec.painted = performance.now() - rec.at)
          ch.port2.postMessage(0)
        })
      }
    }
    get onmessage() {
      return super.onmessage
    }
  }
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) pw.longtasks.push({ at: e.startTime, ms: e.duration })
  }).observe({ type: 'longtask', buffered: true })
}

/**
 * measure records requestAnimationFrame intervals for ms milliseconds, with
 * scrollBy px added to the table's scroll position every frame (0: idle),
 * and what the socket and long-task watchers saw meanwhile.
 */
function measure(page, ms, scrollBy) {
  return page.evaluate(
    async ([ms, scrollBy]) => {
      const pw = window.__pw
      const el = document.querySelector('[data-testid=conn-table-live]')
      const t0 = performance.now()
      const gaps = []
      let rowsMax = 0
      await new Promise((resolve) => {
        let last = t0
        function step(t) {
          gaps.push(t - last)
          last = t
          if (scrollBy) {
            el.scrollTop = el.scrollTop + scrollBy >= el.scrollHeight - el.clientHeight ? 0 : el.scrollTop + scrollBy
            rowsMax = Math.max(rowsMax, el.querySelectorAll('[data-id]').length)
          }
          if (t - t0 < ms) requestAnimationFrame(step)
          else resolve()
        }
        requestAnimationFrame(step)
      })
      const t1 = performance.now()
      // Give the last message's paint a moment to be recorded.
      await new Promise((r) => setTimeout(r, 100))
      const msgs = pw.msgs.filter((m) => m.at >= t0 && m.at < t1 && m.painted !== undefined)
      return {
        gaps: gaps.slice(1),
        seconds: (t1 - t0) / 1000,
        rowsMax,
        msgs: msgs.map((m) => ({ bytes: m.bytes, handler: m.handler, render: m.render, painted: m.painted })),
        longtasks: pw.longtasks.filter((l) => l.at >= t0 && l.at < t1).map((l) => l.ms),
      }
    },
    [ms, scrollBy],
  )
}

/** timeToPaint runs an action in the page and returns the ms until the frame after it was painted. */
function timeToPaint(page, action) {
  return page.evaluate(async (action) => {
    const t0 = performance.now()
    if (action.click) document.querySelector(action.click).click()
    if (action.input) {
      const el = document.querySelector(action.input)
      el.value = action.value
      el.dispatchEvent(new Event('input', { bubbles: true }))
    }
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)))
    return performance.now() - t0
  }, action)
}

function pct(xs, p) {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}

const r1 = (x) => Math.round(x * 10) / 10

/** spread gives the median and the worst of a list of milliseconds. */
function spread(xs) {
  return xs.length ? { p50: r1(pct(xs, 50)), max: r1(Math.max(...xs)) } : null
}

function summary(m) {
  const g = m.gaps
  return {
    fps: r1(g.length / m.seconds),
    frameMs: { p50: r1(pct(g, 50)), p95: r1(pct(g, 95)), p99: r1(pct(g, 99)), max: r1(Math.max(...g)) },
    framesOver50ms: `${g.filter((x) => x > 50).length} of ${g.length}`,
    connectionsMessages: {
      count: m.msgs.length,
      KiB: m.msgs.length ? Math.round(m.msgs[0].bytes / 1024) : 0,
      handlerMs: spread(m.msgs.map((x) => x.handler)),
      throughRenderMs: spread(m.msgs.map((x) => x.render)),
      toPaintMs: spread(m.msgs.map((x) => x.painted)),
    },
    longTasks: { count: m.longtasks.length, ...spread(m.longtasks) },
    rowsInDOM: m.rowsMax || undefined,
  }
}

test(`the dashboard with ${N.toLocaleString('en-US')} live connections`, { timeout: 600_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } })
  await context.addInitScript(instrument)
  const page = await context.newPage()
  const errors = []
  page.on('pageerror', (err) => errors.push(err.message))
  await page.goto(dash.url)
  await page.getByTestId('status').getByText('Live', { exact: true }).waitFor()

  const lc = startLoad(N)
  const t0 = Date.now()
  const ready = await lc.ready
  assert.equal(ready.opened, N)
  // Every tunnel shows up: on the card, and as the table's count.
  await waitFor(async () => parseCount(await page.getByTestId('live-count').textContent()) >= N, `${N} live on the card`, { timeout: 60_000 })
  await waitFor(
    async () => parseCount(await page.getByTestId('mode-live').textContent()) >= N,
    `${N} rows in the live table`,
    { timeout: 60_000 },
  )
  const shownAfter = (Date.now() - t0) / 1000
  // Rates reach the rows once the sampler has seen a second of traffic.
  const firstRate = page.getByTestId('conn-table-live').locator('[role=row][data-id]').first().locator('[role=cell]').nth(9)
  await waitFor(async () => parseBytes(await firstRate.textContent()) > 0, 'rates in the rows')

  const idle = summary(await measure(page, 6000, 0))
  const scroll = summary(await measure(page, 6000, 340))
  assert.ok(scroll.rowsInDOM > 0 && scroll.rowsInDOM < 120, `only a window of rows is in the DOM (${scroll.rowsInDOM})`)
  const sortMs = await timeToPaint(page, { click: '[data-testid=conn-table-live] [role=columnheader]:nth-child(10) button' })
  const sortBackMs = await timeToPaint(page, { click: '[data-testid=conn-table-live] [role=columnheader]:nth-child(1) button' })
  // One of the four upstreams: a quarter of the rows match.
  const port = `:${lc.upstreams()[0].split(':')[1]}`
  const searchMs = await timeToPaint(page, { input: '[data-testid=conn-search]', value: port })
  const matches = (await page.getByTestId('conn-matches').textContent()) ?? ''
  assert.equal(parseCount(matches.split(' of ')[0]), Math.ceil(N / 4), `the search matches a quarter (${matches})`)
  const clearMs = await timeToPaint(page, { input: '[data-testid=conn-search]', value: '' })
  const heapMB = await page.evaluate(() => Math.round((performance.memory?.usedJSHeapSize ?? 0) / 1048576))
  await page.screenshot({ path: artifact('load-10k.png') })

  // Close all from the UI: every tunnel ends, as the load client sees it.
  const c0 = Date.now()
  await page.getByTestId('close-all').click()
  await page.getByTestId('confirm-ok').click()
  await waitFor(() => lc.closed() >= N, `the load client to see all ${N} tunnels end`, { timeout: 60_000 })
  const closedClientS = (Date.now() - c0) / 1000
  await waitFor(async () => (await page.getByTestId('live-count').textContent())?.trim() === '0', 'the page to show 0 live', { timeout: 60_000 })
  const closedPageS = (Date.now() - c0) / 1000
  assert.equal(lc.closed(), N)
  assert.deepEqual(errors, [])

  const figures = {
    connections: N,
    openSeconds: ready.seconds,
    shownAfterSeconds: +shownAfter.toFixed(1),
    idle,
    scrolling: scroll,
    sortByDownRateMs: Math.round(sortMs),
    sortBackByIdMs: Math.round(sortBackMs),
    searchMs: Math.round(searchMs),
    searchMatches: matches.trim(),
    clearSearchMs: Math.round(clearMs),
    jsHeapMB: heapMB,
    closeAll: { clientSawAllEndSeconds: +closedClientS.toFixed(1), pageShowsZeroSeconds: +closedPageS.toFixed(1) },
  }
  writeFileSync(artifact('load.json'), JSON.stringify(figures, null, 2) + '\n')
  console.log(`\n# dashboard with ${N} live connections (measured in chromium; figures, not assertions)`)
  console.log(JSON.stringify(figures, null, 2))
  await context.close()
})
