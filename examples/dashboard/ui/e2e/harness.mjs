// harness.mjs: what the browser tests need around the page. It builds the
// real examples/dashboard program, starts it on free loopback ports, starts
// upstream HTTP servers for real traffic, runs curl through the proxy, and
// launches Debian's chromium through playwright-core (never a downloaded
// browser).

import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const here = path.dirname(fileURLToPath(import.meta.url))
/** uiDir is examples/dashboard/ui; repoRoot the Go module's root. */
export const uiDir = path.resolve(here, '..')
export const repoRoot = path.resolve(uiDir, '..', '..', '..')
/** resultsDir holds screenshots and measurements (git-ignored). */
export const resultsDir = path.join(uiDir, 'test-results')

/** CHROMIUM is Debian's chromium, or the browser named by $CHROMIUM. */
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium'

/**
 * CHROMIUM_ARGS keep chromium quiet on a closed network: without the
 * background-networking flags it keeps trying (and failing) to reach
 * Google's hosts. --no-sandbox because CI runs as root.
 */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-default-apps',
  '--disable-extensions',
]

/**
 * launchBrowser starts headless chromium. Playwright gives every launch a
 * fresh, empty --user-data-dir of its own (and removes it on close); every
 * test then takes a new browser context, with its own storage.
 */
export async function launchBrowser() {
  try {
    accessSync(CHROMIUM, constants.X_OK)
  } catch {
    throw new Error(`no chromium at ${CHROMIUM}: run scripts/ensure-chromium.sh (or install Debian's chromium), or set CHROMIUM`)
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS })
}

/** artifact returns the path of a test artifact (screenshots, figures) and makes its folder. */
export function artifact(name) {
  mkdirSync(resultsDir, { recursive: true })
  return path.join(resultsDir, name)
}

/** tempDir makes a temporary folder; the returned function removes it. */
export function tempDir(prefix = 'proxywatch-e2e-') {
  const dir = mkdtempSync(path.join(tmpdir(), prefix))
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

/**
 * buildDashboard compiles the real program (go build ./examples/dashboard)
 * into dir and returns the binary's path. It is built once per test file.
 */
export function buildDashboard(dir) {
  const bin = path.join(dir, 'dashboard')
  const res = spawnSync('go', ['build', '-o', bin, './examples/dashboard'], { cwd: repoRoot, encoding: 'utf8' })
  if (res.error) throw new Error(`go build: ${res.error.message} (is Go installed?)`)
  if (res.status !== 0) throw new Error(`go build ./examples/dashboard failed:\n${res.stderr}`)
  return bin
}

/**
 * startDashboard runs the dashboard binary with -proxy and -ui on port 0 of
 * loopback (the kernel picks free ports, so there is no race for them) and
 * reads the addresses it prints. It resolves to {proxy, ui, url, stop, output}:
 * proxy is host:port, ui the http://host:port base, url the printed
 * dashboard URL with the secret.
 */
export async function startDashboard(bin, { token, args = [], timeoutMs = 20_000 } = {}) {
  const argv = ['-proxy', '127.0.0.1:0', '-ui', '127.0.0.1:0', ...(token ? ['-token', token] : []), ...args]
  const env = { ...process.env }
  delete env.PROXYWATCH_TOKEN
  const proc = spawn(bin, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  proc.stdout.setEncoding('utf8')
  proc.stderr.setEncoding('utf8')
  proc.stdout.on('data', (s) => (output += s))
  proc.stderr.on('data', (s) => (output += s))
  const exited = once(proc, 'exit')
  const deadline = Date.now() + timeoutMs
  let proxy, ui, url
  while (!(proxy && url)) {
    proxy = /^proxy:\s+http:\/\/(\S+)/m.exec(output)?.[1]
    const m = /^dashboard: (http:\/\/([^/\s]+)\/#token=(\S+))/m.exec(output)
    if (m) {
      url = m[1]
      ui = `http://${m[2]}`
    }
    if (proc.exitCode !== null) throw new Error(`dashboard exited with ${proc.exitCode}:\n${output}`)
    if (Date.now() > deadline) {
      proc.kill('SIGKILL')
      throw new Error(`dashboard did not print its addresses in ${timeoutMs} ms:\n${output}`)
    }
    await sleep(20)
  }
  return {
    proxy,
    ui,
    url,
    proc,
    output: () => output,
    /** stop sends SIGINT (a graceful shutdown, as Ctrl-C) and waits for the exit. */
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      proc.kill('SIGINT')
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(t)
    },
  }
}

/**
 * startUpstream starts a plain HTTP server on a free loopback port, the
 * upstream that clients reach through the proxy:
 *
 *   /slow/...          a 1 GiB body (Content-Length set) sent at about N bytes/s
 *                      (N from the X-Rate request header, else 64 KiB/s) in ten
 *                      slices a second: a download that never ends on its own,
 *                      so a cut shows as an error in the client
 *   /bytes/N           N bytes at once
 *   /upload/...        reads the whole request body, then answers "ok"
 *   anything else      "ok"
 *
 * It resolves to {host, port, url(path), stop, active()}: active counts the
 * slow responses still being written.
 */
export async function startUpstream() {
  const timers = new Set()
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://upstream')
    const slow = /^\/slow\//.test(u.pathname)
    const bytes = /^\/bytes\/(\d+)$/.exec(u.pathname)
    if (/^\/upload\//.test(u.pathname)) {
      req.resume()
      req.on('end', () => {
        res.writeHead(200, { 'Content-Type': 'text/plain' })
        res.end('ok\n')
      })
      return
    }
    if (slow) {
      const bps = Number(req.headers['x-rate'] || 65536)
      const slice = Buffer.alloc(Math.max(1, Math.round(bps / 10)), 0x61)
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(1 << 30) })
      const t = setInterval(() => res.write(slice), 100)
      timers.add(t)
      res.write(slice)
      const stop = () => {
        clearInterval(t)
        timers.delete(t)
      }
      res.on('close', stop)
      return
    }
    if (bytes) {
      const n = Number(bytes[1])
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(n) })
      res.end(Buffer.alloc(n, 0x62))
      return
    }
    res.writeHead(200, { 'Content-Type': 'text/plain' })
    res.end('ok\n')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address()
  const host = `127.0.0.1:${port}`
  return {
    host,
    port,
    url: (p) => `http://${host}${p}`,
    active: () => timers.size,
    async stop() {
      for (const t of timers) clearInterval(t)
      timers.clear()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(() => resolve()))
    },
  }
}

/**
 * curl runs a real curl through the proxy. It resolves at once to
 * {proc, done, kill}: done resolves to {code, stderr} when curl exits (code is
 * curl's exit status: 0 for a complete transfer, 18 for a cut one...).
 */
export function curl(proxy, url, extra = []) {
  const env = { ...process.env }
  for (const k of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'all_proxy', 'no_proxy', 'NO_PROXY']) delete env[k]
  const proc = spawn('curl', ['-sS', '--noproxy', '', '-x', `http://${proxy}`, '-o', '/dev/null', '--max-time', '120', ...extra, url], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  proc.stderr.setEncoding('utf8')
  proc.stderr.on('data', (s) => (stderr += s))
  const done = new Promise((resolve, reject) => {
    proc.on('error', (err) => reject(new Error(`curl: ${err.message} (is curl installed?)`)))
    proc.on('exit', (code, signal) => resolve({ code: code ?? -1, signal, stderr }))
  })
  return {
    proc,
    done,
    exited: () => proc.exitCode !== null || proc.signalCode !== null,
    kill: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
    },
  }
}

/** curlOK runs curl through the proxy and fails unless the transfer completes. */
export async function curlOK(proxy, url, extra = []) {
  const r = await curl(proxy, url, extra).done
  if (r.code !== 0) throw new Error(`curl ${url} exited with ${r.code}: ${r.stderr}`)
}

/**
 * getViaProxy sends one GET through the proxy with node's http client (the
 * absolute URL as the request target, as a proxy client does) and resolves to
 * {status, body}. With a keep-alive agent the connection stays open after the
 * answer, as a browser's would.
 */
export function getViaProxy(proxy, url, agent) {
  const [host, port] = proxy.split(':')
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: Number(port), method: 'GET', path: url, headers: { Host: new URL(url).host }, agent }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/**
 * waitFor polls fn until it returns a truthy value (which it returns) or the
 * time is up; then it fails saying what it waited for and the last value.
 */
export async function waitFor(fn, what, { timeout = 15_000, interval = 100 } = {}) {
  const deadline = Date.now() + timeout
  let last
  let lastErr
  for (;;) {
    try {
      last = await fn()
      if (last) return last
    } catch (err) {
      lastErr = err
    }
    if (Date.now() > deadline) {
      const detail = lastErr ? `; last error: ${lastErr.message}` : `; last value: ${JSON.stringify(last)}`
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${detail}`)
    }
    await sleep(interval)
  }
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

const UNITS = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 }

/** parseBytes reads the UI's "1.5 MiB" (or "1.5 MiB/s") back into bytes. */
export function parseBytes(text) {
  const m = /([\d.,]+)\s*(B|KiB|MiB|GiB|TiB)/.exec(text ?? '')
  if (!m) return NaN
  return Number(m[1].replace(/,/g, '')) * UNITS[m[2]]
}

/** parseCount reads "12,345" back into a number. */
export function parseCount(text) {
  return Number(String(text ?? '').replace(/[^\d]/g, ''))
}
