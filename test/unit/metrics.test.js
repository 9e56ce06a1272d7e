'use strict'

// The supervisor's metrics server on its own: real sockets on loopback, real
// clients, and a real fd limit (prlimit) for the accept-error case.
const t = require('tap')
const { spawn, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const path = require('node:path')
const { request } = require('undici')
const { ROOT, fdCount, hasCommand, sleep, waitFor } = require('../helpers')
const { renderMetrics, serveMetrics } = require('../../dist/lib/supervisor/metrics')

const slots = () => [
  { slot: 0, state: 'ready', pid: 101, accepted: 7, queued: 1, open: 3, loopDelayMs: 12, rss: 5e7, requests: 0, tlsResumed: 40, tlsFull: 2, restarts: 2, stalls: 0, replacements: { hung: 0, memory: 1, requests: 0 }, handedOff: 0, lastExit: null },
  { slot: 1, state: 'dead', pid: null, accepted: 3, queued: 0, open: 0, loopDelayMs: 0, rss: 0, requests: 0, tlsResumed: 0, tlsFull: 0, restarts: 1, stalls: 1, replacements: { hung: 1, memory: 0, requests: 0 }, handedOff: 12, lastExit: 'signal SIGKILL' }
]

async function serve (t, options) {
  const server = await serveMetrics(0, '127.0.0.1', slots, options)
  t.teardown(() => new Promise(resolve => server.close(resolve)))
  return { server, port: server.address().port }
}

/** promise, or fallback once ms have passed; the timer is cleared either way. */
function within (promise, ms, fallback) {
  let timer
  return Promise.race([promise, new Promise(resolve => { timer = setTimeout(() => resolve(fallback), ms) })]).finally(() => clearTimeout(timer))
}

const connections = server => new Promise((resolve, reject) => server.getConnections((err, n) => err ? reject(err) : resolve(n)))

/** A raw connection; resolves `closed` with the time the server closed it. */
function hold (port, { slowloris = false } = {}) {
  const socket = net.connect(port, '127.0.0.1')
  let timer = null
  socket.on('error', () => {})
  socket.on('data', () => {})
  socket.once('connect', () => {
    if (!slowloris) return
    // Headers that never end: one more header line every 200 ms.
    socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n')
    timer = setInterval(() => socket.write(`X-${Math.random().toString(36).slice(2)}: 1\r\n`), 200)
  })
  const closed = new Promise(resolve => socket.once('close', () => { clearInterval(timer); resolve(Date.now()) }))
  return { socket, closed }
}

t.test('renderMetrics: one row per slot and state, exit reasons as labels', async t => {
  const text = renderMetrics(slots())
  t.match(text, 'fastify_reuseport_slot_state{slot="0",state="ready"} 1\n')
  t.match(text, 'fastify_reuseport_slot_state{slot="1",state="ready"} 0\n')
  t.match(text, 'fastify_reuseport_slot_pid{slot="1"} 0\n')
  t.match(text, 'fastify_reuseport_slot_event_loop_delay_seconds{slot="0"} 0.012\n')
  t.match(text, 'fastify_reuseport_slot_last_exit_info{slot="1",reason="signal SIGKILL"} 1\n')
  t.notMatch(text, 'fastify_reuseport_slot_last_exit_info{slot="0"')
  t.match(text, 'fastify_reuseport_slot_tls_handshakes_total{slot="0",kind="resumed"} 40\n')
  t.match(text, 'fastify_reuseport_slot_tls_handshakes_total{slot="0",kind="full"} 2\n')
})

t.test('GET and HEAD /metrics answer 200 with the same headers; other paths 404, other methods 405', async t => {
  const { port } = await serve(t)
  const url = `http://127.0.0.1:${port}`
  const get = await request(`${url}/metrics`)
  const body = await get.body.text()
  t.equal(get.statusCode, 200)
  t.equal(get.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8')
  t.equal(get.headers.connection, 'close', 'no keep-alive: a scraper cannot hoard connections')
  t.ok(body.startsWith(renderMetrics(slots())), 'the slots first')
  t.match(body, /\nfastify_reuseport_supervisor_resident_memory_bytes [1-9]\d+\n/, 'then the supervisor\'s own RSS')
  t.match(body, /\nfastify_reuseport_supervisor_heap_used_bytes\{after_gc="0"\} [1-9]\d+\n/, 'and heap, not collected without --expose-gc')
  t.match(body, /\nfastify_reuseport_supervisor_heap_total_bytes [1-9]\d+\n$/, 'and the heap V8 has committed')
  const head = await request(`${url}/metrics`, { method: 'HEAD' })
  t.equal(head.statusCode, 200, 'HEAD /metrics is 200 (issue 13: it was 404)')
  t.equal(head.headers['content-length'], String(Buffer.byteLength(body)))
  t.equal(await head.body.text(), '', 'no body for HEAD')
  const query = await request(`${url}/metrics?name[]=x`)
  t.equal(query.statusCode, 200)
  await query.body.dump()
  const other = await request(`${url}/metricsx`)
  t.equal(other.statusCode, 404)
  await other.body.dump()
  const post = await request(`${url}/metrics`, { method: 'POST', body: 'x' })
  t.equal(post.statusCode, 405)
  t.equal(post.headers.allow, 'GET, HEAD')
  await post.body.dump()
})

t.test('connection limit: connections past maxConnections are closed at once', async t => {
  const { server, port } = await serve(t, { maxConnections: 4 })
  const held = Array.from({ length: 20 }, () => hold(port))
  t.teardown(() => held.forEach(h => h.socket.destroy()))
  const start = Date.now()
  const closed = await waitFor(async () => {
    const n = (await Promise.all(held.map(h => Promise.race([h.closed, sleep(0).then(() => null)])))).filter(Boolean).length
    return n >= 16 && n
  }, { timeout: 3000, what: '16 connections to be refused' })
  t.equal(closed, 16, `16 of 20 closed by the server in ${Date.now() - start} ms`)
  t.equal(await connections(server), 4, 'the server holds 4')
})

t.test('slowloris and silent clients are closed by the header deadline; fds return to baseline', async t => {
  const baseline = fdCount()
  const { server, port } = await serve(t, { maxConnections: 64, headersTimeout: 1000, requestTimeout: 2000 })
  const listening = fdCount()
  const start = Date.now()
  const held = [
    ...Array.from({ length: 20 }, () => hold(port, { slowloris: true })),
    ...Array.from({ length: 20 }, () => hold(port))
  ]
  t.teardown(() => held.forEach(h => h.socket.destroy()))
  await waitFor(async () => await connections(server) === 40, { timeout: 3000, what: 'the server to accept 40' })
  t.ok(fdCount() >= listening + 40, 'the 40 connections hold fds meanwhile')
  // Bounded: a server without deadlines would hold them for good.
  const times = await Promise.all(held.map(h => within(h.closed, 6000, Infinity)))
  const slowest = Math.max(...times) - start
  // headersTimeout 1000 ms, checked every 1000 ms: every one is gone by 2 s, generously 4 s.
  t.ok(slowest < 4000, `all 40 closed by the server within ${slowest} ms (headersTimeout 1000)`)
  await waitFor(() => fdCount() <= listening, { timeout: 2000, what: 'fds back to baseline' })
  t.equal(fdCount(), listening, `fds back to baseline (${baseline} before listening, ${listening} listening)`)
  const res = await request(`http://127.0.0.1:${port}/metrics`)
  t.equal(res.statusCode, 200, 'and scrapes are served again')
  await res.body.dump()
})

t.test('at the fd limit (EMFILE on accept) the server stays up and serves once fds are free', { skip: !hasCommand('prlimit') && 'prlimit (util-linux) is not installed' }, async t => {
  const script = `
    const { serveMetrics } = require(${JSON.stringify(path.join(ROOT, 'dist', 'lib', 'supervisor', 'metrics.js'))})
    serveMetrics(0, '127.0.0.1', () => [], { onError: err => process.stdout.write('error ' + err.code + '\\n') })
      .then(s => process.stdout.write('port ' + s.address().port + '\\n'))
  `
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise(resolve => child.once('exit', (code, signal) => resolve({ code, signal })))
  t.teardown(() => child.kill('SIGKILL'))
  let out = ''
  child.stdout.on('data', d => { out += d })
  const port = Number((await waitFor(() => /port (\d+)/.exec(out), { what: 'the port' }))[1])
  const fds = fs.readdirSync(`/proc/${child.pid}/fd`).length
  // The soft limit only: lowering the hard one could not be undone without CAP_SYS_RESOURCE.
  const hard = /Max open files\s+\d+\s+(\d+)/.exec(fs.readFileSync(`/proc/${child.pid}/limits`, 'utf8'))[1]
  execFileSync('prlimit', ['--pid', String(child.pid), `--nofile=${fds + 2}:`])
  const held = Array.from({ length: 10 }, () => hold(port))
  t.teardown(() => held.forEach(h => h.socket.destroy()))
  // libuv answers EMFILE on accept by closing the connections it cannot take
  // (uv__emfile_trick); were it to report the error instead, 'error' on the
  // server would have no listener but onError.
  const closed = await waitFor(async () => {
    const n = (await Promise.all(held.map(h => Promise.race([h.closed, sleep(0).then(() => null)])))).filter(Boolean).length
    return n >= 5 && n
  }, { timeout: 5000, what: 'connections past the fd limit to be closed' })
  await sleep(200)
  t.ok(closed >= 5, `${closed} of 10 connections closed by the server at the fd limit (${out.trim().split('\n').filter(l => l.startsWith('error')).join(', ') || 'no accept error reported'})`)
  t.equal(child.exitCode, null, 'still running at the fd limit')
  held.forEach(h => h.socket.destroy())
  execFileSync('prlimit', ['--pid', String(child.pid), `--nofile=${hard}:`])
  const res = await request(`http://127.0.0.1:${port}/metrics`)
  t.equal(res.statusCode, 200, 'and serves once fds are free')
  await res.body.dump()
  child.kill('SIGTERM')
  t.same(await exited, { code: null, signal: 'SIGTERM' })
})

t.test('under node --expose-gc the heap is read after a full GC (lib/supervisor/memory.ts)', async t => {
  const script = `const { processMemory, renderProcessMemory } = require(${JSON.stringify(path.join(ROOT, 'dist', 'lib', 'supervisor', 'memory.js'))})
    globalThis.kept = Array.from({ length: 1e5 }, (_, i) => ({ i }))
    const before = processMemory().heapUsed
    globalThis.kept = null
    const m = processMemory()
    process.stdout.write(JSON.stringify({ freed: before - m.heapUsed, text: renderProcessMemory(m) }))`
  const out = JSON.parse(execFileSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8' }))
  t.match(out.text, /fastify_reuseport_supervisor_heap_used_bytes\{after_gc="1"\} \d+/)
  t.ok(out.freed > 2e6, `garbage is collected before the read: ${out.freed} bytes freed`)
})
