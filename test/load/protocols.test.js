'use strict'

// Draining every server type fastify makes, with real protocol clients:
// node:http2 sessions (h2c, TLS, TLS + allowHTTP1), HTTPS and HTTP keep-alive
// (undici), WebSocket (ws through @fastify/websocket) and Server-Sent Events.
// One worker (-w 1), so that a new connection can only reach the new worker.
const t = require('tap')
const crypto = require('node:crypto')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const http2 = require('node:http2')
const { execFileSync } = require('node:child_process')
const { request } = require('undici')
const WebSocket = require('ws')
const { FIXTURES, alive, freePort, hasCommand, processesWith, sleep, startCli, waitFor } = require('../helpers')
const { h1Paced, h2Paced } = require('../protocol-clients')

const app = path.join(FIXTURES, 'protocols.js')
const tlsSkip = !hasCommand('openssl') && 'openssl is not installed: no certificate for the TLS cases'

let tls = null
if (!tlsSkip) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-tls-'))
  const key = path.join(dir, 'key.pem')
  const cert = path.join(dir, 'cert.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' })
  tls = { key, cert, ca: fs.readFileSync(cert) }
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
}

const msgs = (sup, re) => sup.lines.filter(l => typeof l.msg === 'string' && re.test(l.msg))

async function startApp (t, protocol, args = [], env = {}) {
  const port = await freePort()
  const marker = `reuseport-test-${crypto.randomUUID()}`
  const sup = await startCli(['-w', '1', '-o', '-a', '127.0.0.1', '-p', String(port), ...args, app], {
    env: { REUSEPORT_TEST_MARKER: marker, PROTOCOL: protocol, TLS_KEY: tls?.key ?? '', TLS_CERT: tls?.cert ?? '', ...env }
  })
  t.teardown(async () => {
    await sup.stop('SIGKILL')
    for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
  })
  const secure = protocol !== 'http' && protocol !== 'h2c'
  return { sup, port, marker, origin: `${secure ? 'https' : 'http'}://127.0.0.1:${port}`, ca: secure ? tls.ca : undefined }
}

/** SIGHUP; resolves with the time the supervisor logged the drain start, and the old and new worker pids. */
async function reload (sup) {
  const [old] = sup.workerPids()
  sup.child.kill('SIGHUP')
  let drainAt = 0
  const line = await waitFor(() => {
    const l = msgs(sup, /^reload: slot 1 of 1: worker \d+ ready, draining \d+$/)[0]
    if (l) drainAt = Date.now()
    return l
  }, { interval: 5, timeout: 20000, what: 'the drain to start' })
  return { drainAt, old, next: line.workerPid }
}

/** The old worker exits, and exits 0: the supervisor logs a draining worker's non-zero exit (or crash). */
async function oldWorkerExitedCleanly (t, sup, old) {
  await waitFor(() => !alive(old), { timeout: 15000, what: `old worker ${old} to exit` })
  await sleep(100)
  t.same(msgs(sup, /draining worker \d+ exited/), [], `old worker ${old} exited 0`)
}

const byPid = samples => samples.reduce((m, s) => ({ ...m, [s.pid]: (m[s.pid] ?? 0) + 1 }), {})

const kinds = [
  ['http', 'HTTP/1.1 keep-alive', h1Paced, false],
  ['https', 'HTTPS keep-alive', h1Paced, true],
  ['h2c', 'HTTP/2 cleartext session', h2Paced, false],
  ['h2', 'HTTP/2 over TLS session', h2Paced, true],
  ['h2-http1', 'HTTP/2 over TLS session on an allowHTTP1 server', h2Paced, true]
]

for (const [protocol, name, client, secure] of kinds) {
  t.test(`${name}: a request every 50 ms across SIGHUP, 0 failed`, { skip: secure && tlsSkip }, async t => {
    const { sup, origin, ca } = await startApp(t, protocol)
    const running = client({ origin, ca, durationMs: 4000 })
    // allowHTTP1 carries both: an HTTPS keep-alive client on the same server at once.
    const alongside = protocol === 'h2-http1' ? h1Paced({ origin, ca, durationMs: 4000 }) : null
    await sleep(1200)
    const { drainAt, old, next } = await reload(sup)
    const r = await running
    t.same({ failed: r.requests - r.ok, errors: r.errors }, { failed: 0, errors: {} }, `${r.requests} requests, 0 failed: ${JSON.stringify(byPid(r.samples))}`)
    t.ok(r.samples.some(s => s.pid === old) && r.samples.some(s => s.pid === next), 'served by the old worker, then by the new one')
    const firstNew = r.samples.find(s => s.pid === next)
    t.ok(firstNew.start - drainAt < 1000, `moved to the new worker ${firstNew.start - drainAt} ms after the drain started`)
    t.same(r.samples.filter(s => s.start > drainAt + 1000 && s.pid !== next), [], 'nothing went to the old worker after that')
    if (client === h2Paced) {
      t.ok(r.sessions.length >= 2, `the client opened a new session (${r.sessions.length}); refused streams retried: ${r.retried}`)
      t.ok(r.sessions[0].goawayAt !== null && r.sessions[0].goawayAt - drainAt < 1000, 'the first session got GOAWAY at drain start')
    } else {
      t.ok(r.samples.filter(s => s.pid === old).length > 5, 'the keep-alive connection served several requests before the reload')
    }
    if (alongside) {
      const h1 = await alongside
      t.same({ failed: h1.requests - h1.ok, errors: h1.errors }, { failed: 0, errors: {} }, `HTTPS/1.1 on the same server: ${h1.requests} requests, 0 failed`)
      t.ok(h1.samples.every(s => s.httpVersion === '1.1') && h1.samples.some(s => s.pid === next), 'served as HTTP/1.1 by both workers')
    }
    await oldWorkerExitedCleanly(t, sup, old)
    t.equal(sup.stderr, '', 'nothing on stderr')
  })
}

t.test('WebSocket: 1001 within 1 s of the drain, then served by the new worker', async t => {
  const { sup, port } = await startApp(t, 'http', [], { DRAIN_HOOK: '1' })
  const connect = () => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`)
    ws.once('message', m => resolve({ ws, pid: JSON.parse(String(m)).pid }))
    ws.once('error', reject)
  })
  const first = await connect()
  const closed = new Promise(resolve => first.ws.once('close', (code, reason) => resolve({ code, reason: String(reason), at: Date.now() })))
  const { drainAt, old, next } = await reload(sup)
  t.equal(first.pid, old, 'the first connection was on the old worker')
  const c = await closed
  t.ok(c.code === 1001 || c.code === 1012, `close code ${c.code} (${c.reason})`)
  t.ok(c.at - drainAt < 1000, `closed ${c.at - drainAt} ms after the drain started`)
  const second = await connect()
  t.equal(second.pid, next, 'the reconnection reached the new worker')
  second.ws.close()
  t.ok(msgs(sup, /^onDrain hook ran$/).some(l => l.pid === old), 'the app\'s onDrain hook ran in the old worker')
  await oldWorkerExitedCleanly(t, sup, old)
})

t.test('Server-Sent Events: the stream ends cleanly at drain start, and the old worker exits 0', async t => {
  // CARELESS_SSE: the app keeps writing after the response ended; that must not crash the worker.
  const { sup, origin } = await startApp(t, 'http', [], { CARELESS_SSE: '1' })
  const res = await request(`${origin}/sse?every=5`)
  t.equal(res.headers['content-type'], 'text/event-stream')
  let text = ''
  const ended = new Promise(resolve => {
    res.body.setEncoding('utf8')
    res.body.on('data', d => { text += d })
    res.body.on('end', () => resolve({ at: Date.now() }))
    res.body.on('error', err => resolve({ at: Date.now(), error: err.code ?? err.message }))
  })
  await sleep(300)
  const { drainAt, old } = await reload(sup)
  const end = await ended
  t.equal(end.error, undefined, 'no reset: the body ended')
  t.ok(end.at - drainAt < 1000, `ended ${end.at - drainAt} ms after the drain started`)
  t.match(text, new RegExp(`^data: ${old}\n\n(data: tick\n\n)+$`), 'whole events only')
  await oldWorkerExitedCleanly(t, sup, old)
})

t.test('HTTP/2 event stream: ended at drain start', { skip: tlsSkip }, async t => {
  const { sup, origin, ca } = await startApp(t, 'h2')
  const session = http2.connect(origin, { ca, servername: 'localhost' })
  session.on('error', () => {})
  const stream = session.request({ ':path': '/sse' })
  let text = ''
  stream.setEncoding('utf8')
  stream.on('data', d => { text += d })
  const ended = new Promise(resolve => {
    stream.on('end', () => resolve({ at: Date.now() }))
    stream.on('error', err => resolve({ at: Date.now(), error: err.code }))
  })
  await sleep(300)
  const { drainAt, old } = await reload(sup)
  const end = await ended
  t.equal(end.error, undefined, 'END_STREAM, no RST_STREAM')
  t.ok(end.at - drainAt < 1000, `ended ${end.at - drainAt} ms after the drain started`)
  t.match(text, /^data: \d+\n\n(data: tick\n\n)*$/)
  session.close()
  await oldWorkerExitedCleanly(t, sup, old)
})

t.test('at the grace deadline what is left is closed, with one line counting it by kind', async t => {
  const { sup, port, origin } = await startApp(t, 'http', ['-g', '1500', '-l', 'info'])
  const [old] = sup.workerPids()
  const slow = request(`${origin}/slow?ms=20000`).then(r => r.statusCode, err => err.code ?? err.message)
  // A WebSocket client that never answers the close frame.
  const raw = net.connect(port, '127.0.0.1')
  raw.on('error', () => {})
  const upgraded = new Promise(resolve => raw.once('data', d => resolve(String(d))))
  raw.write(`GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`)
  t.match(await upgraded, /^HTTP\/1\.1 101/)
  await sleep(200)
  sup.child.kill('SIGHUP')
  await waitFor(() => !alive(old), { timeout: 10000, what: 'the old worker to exit' })
  const lines = msgs(sup, /^drain grace period over/)
  t.equal(lines.length, 1, 'one line')
  t.equal(lines[0].msg, 'drain grace period over: closed 1 http/1.1, 1 websocket')
  t.same(lines[0].closed, { 'http/1.1': 1, 'http/2': 0, websocket: 1, other: 0 })
  t.not(await slow, 200, 'the request past the deadline was cut')
  raw.destroy()
  await sleep(100)
  t.same(msgs(sup, /draining worker \d+ exited/), [], 'the old worker exited 0')
})

t.test('HTTP/2: a session busy past the grace deadline is destroyed and counted', { skip: tlsSkip }, async t => {
  const { sup, origin, ca } = await startApp(t, 'h2', ['-g', '1500', '-l', 'info'])
  const [old] = sup.workerPids()
  const session = http2.connect(origin, { ca, servername: 'localhost' })
  session.on('error', () => {})
  const stream = session.request({ ':path': '/slow?ms=20000' })
  stream.resume()
  const outcome = new Promise(resolve => {
    stream.on('error', err => resolve(err.code))
    stream.on('close', () => resolve(stream.rstCode))
  })
  await sleep(300)
  sup.child.kill('SIGHUP')
  await waitFor(() => !alive(old), { timeout: 10000, what: 'the old worker to exit' })
  t.ok(await outcome, 'the stream was cut')
  const lines = msgs(sup, /^drain grace period over/)
  t.same(lines.map(l => l.msg), ['drain grace period over: closed 1 http/2'])
  session.destroy()
})

t.test('a worker crash is logged by the supervisor with its error, serving or draining', async t => {
  const { sup, origin } = await startApp(t, 'http', [], { DRAIN_CRASH: '1' })
  const [first] = sup.workerPids()
  await request(`${origin}/crash`).then(r => r.body.text())
  // A graceful crash (--crash-grace): logged once when the worker says so, with its error.
  const serving = await waitFor(() => msgs(sup, new RegExp(`^slot 1 of 1: worker ${first} crashed, answering what it has for up to \\d+ ms: crash from a timer; respawning (in \\d+ ms|now)$`))[0], { what: 'the crash line' })
  t.match(serving.err, { message: 'crash from a timer', stack: /Error: crash from a timer\n\s+at Immediate\.<anonymous> \(.*protocols\.js:\d+:\d+\)/ }, 'with its stack')
  await waitFor(() => sup.workerPids().length === 1 && !sup.workerPids().includes(first), { what: 'the replacement' })
  await waitFor(() => msgs(sup, /: worker \d+ ready$/).length === 1, { what: 'the replacement to be ready' })
  // A request in flight keeps the old worker draining while its onDrain hook crashes it.
  const slow = request(`${origin}/slow?ms=1500`).then(r => r.statusCode, err => err.code)
  await sleep(100)
  const { old } = await reload(sup)
  await slow
  const draining = await waitFor(() => msgs(sup, new RegExp(`^slot 1 of 1: draining worker ${old} exited with code 1: crash while draining$`))[0], { what: 'the draining crash line' })
  t.match(draining.err, { stack: /crash while draining/ })
  t.equal(sup.stderr, '', 'no raw stack on stderr')
})
