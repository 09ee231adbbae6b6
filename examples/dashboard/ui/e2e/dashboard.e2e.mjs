// Browser end-to-end tests of the stock dashboard: Debian's chromium, driven
// by playwright-core, against the real examples/dashboard program, with real
// traffic (curl) through its proxy to upstream servers on loopback.
//
//   npm run e2e            (from examples/dashboard/ui; make e2e from the root)
//
// Screenshots go to test-results/ (git-ignored).

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import {
  artifact,
  buildDashboard,
  curl,
  curlOK,
  getViaProxy,
  launchBrowser,
  parseBytes,
  parseCount,
  startDashboard,
  startUpstream,
  tempDir,
  waitFor,
} from './harness.mjs'

const TOKEN = `e2e-${randomBytes(9).toString('hex')}`

let tmp, bin, dash, up, browser, uploadFile
/** observer is a page open from start to end: its chart holds the suite's last minute of traffic. */
let observer
/** clients are the curl processes still running; killed after each test. */
const clients = new Set()
/** problems collects uncaught page errors and unexpected console errors. */
const problems = []

before(async () => {
  tmp = tempDir()
  bin = buildDashboard(tmp.dir)
  dash = await startDashboard(bin, { token: TOKEN })
  up = await startUpstream()
  uploadFile = path.join(tmp.dir, 'upload.bin')
  writeFileSync(uploadFile, randomBytes(4 << 20))
  browser = await launchBrowser()
  observer = await open()
})

after(async () => {
  for (const c of clients) c.kill()
  await browser?.close()
  await dash?.stop()
  await up?.stop()
  tmp?.remove()
})

/**
 * open makes a new browser context (its own storage) and page on the
 * dashboard, signed in with the secret in the URL as the program prints it,
 * and waits until the socket is live.
 */
async function open({ url = `${dash.url}`, viewport = { width: 1440, height: 900 }, live = true, setup, ...ctxOpts } = {}) {
  const context = await browser.newContext({ viewport, ...ctxOpts })
  const page = await context.newPage()
  setup?.(page)
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return
    const text = msg.text()
    // A refused or dropped socket is what some tests are about.
    if (/WebSocket|401|ERR_CONNECTION_REFUSED|Failed to load resource/.test(text)) return
    problems.push(`console error: ${text}`)
  })
  await page.goto(url)
  if (live) await page.getByTestId('status').getByText('Live', { exact: true }).waitFor()
  return page
}

/** start runs curl through the proxy and tracks it so that it is killed after the test. */
function start(url, extra = []) {
  const c = curl(dash.proxy, url, extra)
  clients.add(c)
  void c.done.then(() => clients.delete(c))
  return c
}

/** slow starts a never-ending download at about bps bytes/s; tag makes its URL unique. */
function slow(tag, bps = 64 * 1024, extra = []) {
  return start(up.url(`/slow/${tag}`), ['-H', `X-Rate: ${bps}`, ...extra])
}

function killClients() {
  for (const c of clients) c.kill()
  clients.clear()
}

/** row finds the live-table row whose URL contains text. */
function liveRow(page, text) {
  return page.getByTestId('conn-table-live').locator('[role=row][data-id]').filter({ hasText: text })
}

function closedRow(page, text) {
  return page.getByTestId('conn-table-closed').locator('[role=row][data-id]').filter({ hasText: text })
}

/** cells reads a desktop row's cells as text. */
async function cells(row) {
  return row.locator('[role=cell]').allTextContents()
}

// Column positions in the desktop table (lib/columns.ts).
const COL = { id: 0, protocol: 1, method: 2, host: 3, url: 4, client: 5, up: 6, down: 7, downRate: 9, status: 11 }
const CLOSED_COL = { status: 9, reason: 10 }

/**
 * chartInk reads the chart's canvas: how many pixels in its upper 80% (above
 * the zero line and the time axis) have the upload or download line color,
 * and a hash of the whole picture.
 */
function chartInk(page) {
  return page.evaluate(() => {
    const canvas = document.querySelector('[data-testid=traffic-chart]')
    const ctx = canvas.getContext('2d')
    const { width: w, height: h } = canvas
    const data = ctx.getImageData(0, 0, w, h).data
    const css = getComputedStyle(document.documentElement)
    const rgb = (name) => {
      const m = /#(..)(..)(..)/.exec(css.getPropertyValue(name))
      return [1, 2, 3].map((i) => parseInt(m[i], 16))
    }
    const upC = rgb('--up')
    const downC = rgb('--down')
    const near = (i, c) => Math.abs(data[i] - c[0]) < 40 && Math.abs(data[i + 1] - c[1]) < 40 && Math.abs(data[i + 2] - c[2]) < 40
    let up = 0
    let down = 0
    let hash = 0
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = (y * w + x) * 4
        hash = (Math.imul(hash, 31) + data[i] + data[i + 1] * 7 + data[i + 2] * 13) >>> 0
        if (y >= h * 0.8) continue
        if (near(i, upC)) up++
        else if (near(i, downC)) down++
      }
    }
    return { up, down, hash }
  })
}

async function text(page, testid) {
  return (await page.getByTestId(testid).textContent()) ?? ''
}

describe('dashboard in chromium against the real program', { concurrency: false }, () => {
  test('the chart moves and the figures count real traffic', async () => {
    const page = await open()
    try {
      const before = await chartInk(page)
      assert.equal(before.down, 0, 'no download line above zero before any traffic')
      slow('chart-a', 512 * 1024)
      slow('chart-b', 128 * 1024)
      start(up.url('/upload/chart'), ['--data-binary', `@${uploadFile}`, '--limit-rate', '256k'])
      // The download line rises above zero, and both rates show on the cards.
      await waitFor(async () => (await chartInk(page)).down > 30, 'the download line to rise in the chart')
      await waitFor(async () => (await chartInk(page)).up > 30, 'the upload line to rise in the chart')
      await waitFor(async () => parseBytes(await text(page, 'down-rate')) > 100 * 1024, 'a download rate on the card')
      await waitFor(async () => parseBytes(await text(page, 'up-rate')) > 50 * 1024, 'an upload rate on the card')
      const down0 = parseBytes(await text(page, 'down-total'))
      await waitFor(async () => parseBytes(await text(page, 'down-total')) > down0, 'the download total to grow')
      // It keeps moving: each traffic message shifts the picture.
      const a = await chartInk(page)
      await waitFor(async () => (await chartInk(page)).hash !== a.hash, 'the chart to change again', { timeout: 5000 })
      assert.ok(parseCount(await text(page, 'live-count')) >= 3, 'the live count includes the transfers')
      await page.screenshot({ path: artifact('chart.png') })
    } finally {
      killClients()
      await page.context().close()
    }
  })

  test('a slow download appears as a row whose bytes grow', async () => {
    const page = await open()
    try {
      slow('grow', 96 * 1024)
      const row = liveRow(page, '/slow/grow')
      await row.waitFor()
      const first = await cells(row)
      assert.equal(first[COL.protocol], 'HTTP')
      assert.equal(first[COL.method], 'GET')
      assert.equal(first[COL.host], up.host)
      assert.match(first[COL.client], /^127\.0\.0\.1:\d+$/)
      const d0 = parseBytes(first[COL.down])
      let d1 = d0
      await waitFor(
        async () => {
          const c = await cells(row)
          d1 = parseBytes(c[COL.down])
          return d1 > d0 && parseBytes(c[COL.downRate]) > 0 && c[COL.status].trim() === '200'
        },
        'the row to show more bytes, a rate and the 200 status',
      )
      // A second push later, still more.
      await waitFor(async () => parseBytes((await cells(row))[COL.down]) > d1, 'the bytes to keep growing')
      await page.screenshot({ path: artifact('slow-download.png') })
    } finally {
      killClients()
      await page.context().close()
    }
  })

  test('close one ends that transfer only, close all ends the rest: the clients see errors', async () => {
    const page = await open()
    try {
      const a = slow('kill-a')
      const b = slow('kill-b')
      const c = slow('kill-c', 64 * 1024, ['-p']) // through a CONNECT tunnel
      await liveRow(page, '/slow/kill-a').waitFor()
      await liveRow(page, '/slow/kill-b').waitFor()
      const tunnel = liveRow(page, 'HTTPS-Tunnel').filter({ hasText: up.host })
      await tunnel.waitFor()

      await liveRow(page, '/slow/kill-a').getByTestId('close-one').click()
      const ra = await waitFor(() => a.exited() && a.done, 'curl to fail after close one', { timeout: 10_000 })
      assert.notEqual(ra.code, 0, `curl must see an error, got exit 0 (${ra.stderr})`)
      await page.getByTestId('toast').filter({ hasText: /Closed connection \d+/ }).waitFor()
      await liveRow(page, '/slow/kill-a').waitFor({ state: 'detached' })
      assert.ok(!b.exited() && !c.exited(), 'the other transfers go on')
      await liveRow(page, '/slow/kill-b').waitFor()

      await page.getByTestId('close-all').click()
      const dialog = page.getByTestId('confirm')
      await dialog.waitFor()
      assert.match((await dialog.textContent()) ?? '', /Close all connections\?/)
      await dialog.getByTestId('confirm-ok').click()
      const [rb, rc] = await Promise.all([b.done, c.done])
      assert.notEqual(rb.code, 0, `curl (plain HTTP) must see an error (${rb.stderr})`)
      assert.notEqual(rc.code, 0, `curl (tunnel) must see an error (${rc.stderr})`)
      await page.getByTestId('toast').filter({ hasText: /Closed \d+ connections?/ }).waitFor()
      await page.getByTestId('conn-empty').waitFor()
      await waitFor(async () => (await text(page, 'live-count')).trim() === '0', 'the live count to drop to 0')
      await waitFor(() => up.active() === 0, 'the upstream side to be released')
    } finally {
      killClients()
      await page.context().close()
    }
  })

  test('close filtered closes only the connections the search matches', async () => {
    const page = await open()
    try {
      const keep = slow('filter-keep')
      const gone1 = slow('filter-gone-1')
      const gone2 = slow('filter-gone-2')
      await liveRow(page, 'filter-keep').waitFor()
      await liveRow(page, 'filter-gone-2').waitFor()
      await page.getByTestId('conn-search').fill('filter-gone')
      await waitFor(async () => (await text(page, 'conn-matches')).startsWith('2 of'), 'the search to match two rows')
      await page.getByTestId('close-filtered').click()
      await page.getByTestId('confirm').getByTestId('confirm-ok').click()
      const [r1, r2] = await Promise.all([gone1.done, gone2.done])
      assert.notEqual(r1.code, 0)
      assert.notEqual(r2.code, 0)
      await page.getByTestId('conn-search').fill('')
      await liveRow(page, 'filter-keep').waitFor()
      assert.ok(!keep.exited(), 'the connection outside the filter goes on')
    } finally {
      killClients()
      await page.context().close()
    }
  })

  test('the closed view lists ended connections with their reasons', async () => {
    const page = await open()
    const agent = new http.Agent({ keepAlive: true })
    try {
      await curlOK(dash.proxy, up.url('/bytes/300000?tag=done'))
      // A keep-alive client, as browsers are: it does not hang up at once
      // after reading the proxy's error answer.
      const bad = await getViaProxy(dash.proxy, 'http://127.0.0.1:1/nothing-listens-here', agent)
      assert.ok(bad.status >= 500, `the proxy answers with an error status (${bad.status})`)
      const killed = slow('reason-api')
      await liveRow(page, 'reason-api').getByTestId('close-one').click()
      await killed.done
      await page.getByTestId('mode-closed').click()
      const done = closedRow(page, 'tag=done')
      await done.waitFor()
      let c = await cells(done)
      assert.equal(c[CLOSED_COL.reason], 'completed')
      assert.equal(c[CLOSED_COL.status], '200')
      assert.equal(c[COL.down], '293 KiB', 'the exact body size (300,000 bytes)')
      const refused = closedRow(page, 'nothing-listens-here')
      c = await cells(refused)
      assert.equal(c[CLOSED_COL.reason], 'upstream error')
      assert.match((await refused.locator('[role=cell]').nth(CLOSED_COL.reason).getAttribute('title')) ?? '', /connection refused/)
      c = await cells(closedRow(page, 'reason-api'))
      assert.equal(c[CLOSED_COL.reason], 'closed by API')
      // A click shows the details, with the reason.
      await closedRow(page, 'reason-api').click()
      const detail = page.getByTestId('conn-detail')
      await detail.getByText('closed by API').waitFor()
      await detail.getByText('closed', { exact: true }).waitFor()
      await page.screenshot({ path: artifact('closed-view.png') })
    } finally {
      agent.destroy()
      killClients()
      await page.context().close()
    }
  })

  test('pause holds the table, counts pending updates and keeps counting traffic', async () => {
    const page = await open()
    try {
      await page.getByTestId('conn-pause').click()
      await page.getByTestId('conn-pause').getByText('Resume').waitFor()
      slow('paused', 128 * 1024)
      await waitFor(async () => parseCount(await text(page, 'conn-pending')) >= 2, 'pending updates on the pause button')
      assert.equal(await liveRow(page, '/slow/paused').count(), 0, 'no new row while paused')
      // The figures above the table keep counting: the paused download's rate shows, and the total grows.
      await waitFor(async () => parseBytes(await text(page, 'down-rate')) > 32 * 1024, 'the download rate while paused')
      const total0 = parseBytes(await text(page, 'down-total'))
      await waitFor(async () => parseBytes(await text(page, 'down-total')) > total0, 'the total to keep counting while paused')
      assert.equal(await liveRow(page, '/slow/paused').count(), 0, 'still no new row while paused')
      await page.screenshot({ path: artifact('paused.png') })
      await page.getByTestId('conn-pause').click()
      await liveRow(page, '/slow/paused').waitFor({ timeout: 5000 })
      assert.equal(await page.getByTestId('conn-pending').count(), 0)
    } finally {
      killClients()
      await page.context().close()
    }
  })

  test('the log level filter is applied on the server: WARN hides INFO', async () => {
    // Every frame of the page's socket, as the browser saw it.
    const frames = []
    const page = await open({
      url: `${dash.url.replace('/#', '/#/logs?')}`,
      setup: (p) =>
        p.on('websocket', (ws) => {
          ws.on('framereceived', (f) => frames.push({ dir: 'in', data: String(f.payload) }))
          ws.on('framesent', (f) => frames.push({ dir: 'out', data: String(f.payload) }))
        }),
    })
    try {
      await page.getByTestId('log-list').waitFor()
      assert.equal(await page.getByTestId('log-level').inputValue(), 'INFO')
      await curlOK(dash.proxy, up.url('/bytes/10?tag=info-tunnel'), ['-p'])
      await curlOK(dash.proxy, 'http://127.0.0.1:2/before-warn') // an ERROR record (nothing listens there)
      await page.getByTestId('log-line').filter({ hasText: `Accepting CONNECT to ${up.host}` }).first().waitFor()
      await page.getByTestId('log-line').filter({ hasText: '127.0.0.1:2' }).first().waitFor()
      assert.ok((await page.locator('[data-testid=log-line][data-level=INFO]').count()) > 0)

      await page.getByTestId('log-level').selectOption('WARN')
      await waitFor(
        () => frames.find((f) => f.dir === 'in' && /"type":"subscribed"/.test(f.data) && /"logLevel":"WARN"/.test(f.data)),
        'the server to confirm the WARN subscription',
      )
      const sent = frames.filter((f) => f.dir === 'out' && /"action":"subscribe"/.test(f.data)).map((f) => JSON.parse(f.data))
      assert.equal(sent.at(-1).logLevel, 'WARN', 'the level goes to the server in a subscribe')
      // The server replays its backlog at the new level: the earlier ERROR, no INFO.
      await page.getByTestId('log-line').filter({ hasText: '127.0.0.1:2' }).first().waitFor()
      assert.equal(await page.locator('[data-testid=log-line][data-level=INFO]').count(), 0, 'no INFO line replayed')
      const mark = frames.length

      // INFO traffic (a tunnel) and an ERROR (no upstream) after the change.
      await curlOK(dash.proxy, up.url('/bytes/10?tag=warn-tunnel'), ['-p'])
      await curlOK(dash.proxy, 'http://127.0.0.1:1/after-warn')
      await page.getByTestId('log-line').filter({ hasText: '127.0.0.1:1' }).first().waitFor()
      assert.equal(await page.locator('[data-testid=log-line][data-level=INFO]').count(), 0, 'no INFO line shown')
      assert.equal(await page.locator('[data-testid=log-line][data-level=DEBUG]').count(), 0, 'no DEBUG line shown')
      const logsAfter = frames
        .slice(mark)
        .filter((f) => f.dir === 'in' && /^\{"type":"log"/.test(f.data))
        .map((f) => JSON.parse(f.data).data)
      assert.ok(logsAfter.length > 0, 'log records still arrive')
      for (const r of logsAfter) assert.ok(r.level === 'WARN' || r.level === 'ERROR', `the server sent a ${r.level} record: ${r.message}`)
      await page.screenshot({ path: artifact('logs-warn.png') })
    } finally {
      killClients()
      await page.context().close()
    }
  })

  test("clicking a log line's connection opens that connection", async () => {
    // An upstream of its own, so that its log line is the only one naming it.
    const other = await startUpstream()
    const page = await open({ url: `${dash.url.replace('/#', '/#/logs?')}` })
    try {
      start(other.url('/slow/from-logs'), ['-p'])
      const line = page.getByTestId('log-line').filter({ hasText: `Accepting CONNECT to ${other.host}` })
      await line.waitFor()
      const link = line.getByTestId('log-conn')
      const id = ((await link.textContent()) ?? '').trim().replace('#', '')
      assert.match(id, /^\d+$/)
      await link.click()
      const detail = page.getByTestId('conn-detail')
      await detail.getByRole('heading', { name: `Connection #${id}` }).waitFor()
      await detail.getByText('HTTPS-Tunnel').waitFor()
      await detail.getByText('live', { exact: true }).waitFor()
      assert.ok(((await detail.textContent()) ?? '').includes(other.host), 'the details name the host')
      // The panel lists this connection's own log lines.
      await detail.getByText(`Accepting CONNECT to ${other.host}`).waitFor()
      await page.screenshot({ path: artifact('log-to-connection.png') })
    } finally {
      killClients()
      await page.context().close()
      await other.stop()
    }
  })

  test('a wrong secret shows the login screen; the right one gets in', async () => {
    const page = await open({ url: `${dash.ui}/#token=wrong-secret`, live: false })
    try {
      await page.getByTestId('login').waitFor()
      await page.getByTestId('login-error').getByText('refused').waitFor()
      assert.ok(!page.url().includes('wrong-secret'), 'the secret is taken out of the address bar')
      await page.screenshot({ path: artifact('login-refused.png') })
      await page.getByTestId('login-secret').fill('still-wrong')
      await page.getByTestId('login-submit').click()
      await page.getByTestId('login-error').getByText('That secret was refused.').waitFor()
      await page.getByTestId('login-secret').fill(TOKEN)
      await page.getByTestId('login-submit').click()
      await page.getByTestId('status').getByText('Live', { exact: true }).waitFor()
      assert.equal(await page.getByTestId('login').count(), 0)
      // Remembered for the next visit, without the secret in the URL.
      await page.goto(`${dash.ui}/`)
      await page.getByTestId('status').getByText('Live', { exact: true }).waitFor()
    } finally {
      await page.context().close()
    }
    const bare = await open({ url: `${dash.ui}/`, live: false })
    try {
      await bare.getByTestId('login').waitFor()
      assert.equal(await bare.getByTestId('login-error').count(), 0, 'no error before a secret was tried')
    } finally {
      await bare.context().close()
    }
  })

  test('the theme toggles between system, light and dark, and is remembered', async () => {
    const page = await open({ colorScheme: 'light' })
    try {
      slow('theme', 200 * 1024)
      await liveRow(page, '/slow/theme').waitFor()
      const theme = () => page.evaluate(() => document.documentElement.dataset.theme)
      const bg = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor)
      assert.equal(await theme(), 'light')
      const lightBg = await bg()
      const toggle = page.getByTestId('theme')
      assert.equal(await toggle.getAttribute('aria-label'), 'Theme: follow system')
      await toggle.click()
      assert.equal(await toggle.getAttribute('aria-label'), 'Theme: light')
      assert.equal(await theme(), 'light')
      await toggle.click()
      assert.equal(await toggle.getAttribute('aria-label'), 'Theme: dark')
      await waitFor(async () => (await theme()) === 'dark', 'the dark theme')
      assert.notEqual(await bg(), lightBg)
      await waitFor(async () => (await chartInk(page)).down > 30, 'the chart in dark colors')
      await page.screenshot({ path: artifact('overview-dark.png') })
      await page.reload()
      await page.getByTestId('status').getByText('Live', { exact: true }).waitFor()
      assert.equal(await theme(), 'dark', 'the choice survives a reload')
      await page.getByTestId('theme').click()
      assert.equal(await page.getByTestId('theme').getAttribute('aria-label'), 'Theme: follow system')
      assert.equal(await theme(), 'light')
    } finally {
      killClients()
      await page.context().close()
    }
  })

  test('a phone-sized screen renders the cards, the chart and the connections', async () => {
    const page = await open({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 })
    try {
      slow('phone-1', 300 * 1024)
      slow('phone-2', 40 * 1024, ['-p'])
      const card = page.getByTestId('conn-table-live').locator('.row.compact')
      await waitFor(async () => (await card.count()) >= 2, 'two connection cards')
      await waitFor(async () => (await chartInk(page)).down > 10, 'the chart to show traffic')
      const box = await page.getByTestId('traffic-chart').boundingBox()
      assert.ok(box && box.width > 300 && box.width <= 390, `the chart fits the screen (${box?.width})`)
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
      assert.ok(overflow <= 0, `no sideways scrolling (${overflow}px too wide)`)
      // Every card shows its host, and its close button is on screen.
      const first = card.first()
      const closeBox = await first.getByTestId('close-one').boundingBox()
      assert.ok(closeBox && closeBox.x + closeBox.width <= 390, 'the close button is on screen')
      await page.screenshot({ path: artifact('phone-overview.png') })
      await page.getByTestId('nav-logs').click()
      await page.getByTestId('log-list').waitFor()
      await page.getByTestId('log-line').first().waitFor()
      const logOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
      assert.ok(logOverflow <= 0, `no sideways scrolling on Logs (${logOverflow}px too wide)`)
      await page.screenshot({ path: artifact('phone-logs.png') })
    } finally {
      killClients()
      await page.context().close()
    }
  })

  test('the overview with live traffic (the README screenshot)', async () => {
    const page = observer
    slow('video/segment-0042.ts', 900 * 1024)
    slow('downloads/debian-13.iso', 420 * 1024)
    slow('api/v1/stream?follow=1', 24 * 1024)
    slow('assets/app.js', 160 * 1024, ['-p'])
    slow('backup/db-2026-11-27.tar.zst', 640 * 1024)
    slow('events?channel=deploys', 2 * 1024, ['-p'])
    start(up.url('/upload/photos'), ['--data-binary', `@${uploadFile}`, '--limit-rate', '300k'])
    try {
      await waitFor(async () => (await page.getByTestId('conn-table-live').locator('[role=row][data-id]').count()) >= 7, 'seven live rows')
      await waitFor(async () => parseBytes(await text(page, 'up-rate')) > 100 * 1024, 'the upload to show')
      // Two more traffic pushes, so that the rates settle in the table.
      const a = await chartInk(page)
      await waitFor(async () => (await chartInk(page)).hash !== a.hash, 'one more chart update', { timeout: 5000 })
      const b = await chartInk(page)
      await waitFor(async () => (await chartInk(page)).hash !== b.hash, 'another chart update', { timeout: 5000 })
      // The whole table fits a 1280 px wide window.
      await page.setViewportSize({ width: 1280, height: 720 })
      const table = page.getByTestId('conn-table-live')
      await waitFor(async () => (await table.evaluate((el) => el.scrollWidth - el.clientWidth)) <= 0, 'the table to fit 1280 px')
      await page.screenshot({ path: artifact('overview-1280.png') })
      await page.setViewportSize({ width: 1440, height: 780 })
      const c = await chartInk(page)
      await waitFor(async () => (await chartInk(page)).hash !== c.hash, 'the chart at the new size', { timeout: 5000 })
      await page.screenshot({ path: artifact('overview.png') })
    } finally {
      killClients()
    }
  })
})

describe('reconnecting', () => {
  test('after the server restarts, the page reconnects and shows the new server state', async () => {
    // Its own server, restarted on the same ports.
    const first = await startDashboard(bin, { token: TOKEN })
    const proxyAddr = first.proxy
    const uiAddr = first.ui.replace('http://', '')
    let second
    const page = await open({ url: first.url })
    try {
      const old = curl(proxyAddr, up.url('/slow/before-restart'))
      clients.add(old)
      await liveRow(page, 'before-restart').waitFor()
      first.proc.kill('SIGKILL') // a crash: no goodbye to the page
      await page.getByTestId('lost-banner').waitFor()
      await old.done
      second = await startDashboard(bin, { token: TOKEN, args: ['-proxy', proxyAddr, '-ui', uiAddr] })
      assert.equal(second.proxy, proxyAddr)
      await page.getByTestId('status').getByText('Live', { exact: true }).waitFor({ timeout: 20_000 })
      await page.getByTestId('lost-banner').waitFor({ state: 'detached' })
      const fresh = curl(proxyAddr, up.url('/slow/after-restart'))
      clients.add(fresh)
      await liveRow(page, 'after-restart').waitFor()
      assert.equal(await liveRow(page, 'before-restart').count(), 0, 'nothing from the old server is left in the table')
    } finally {
      killClients()
      await page.context().close()
      first.proc.kill('SIGKILL')
      await second?.stop()
    }
  })
})

test('no page error or unexpected console error happened', () => {
  assert.deepEqual(problems, [])
})
