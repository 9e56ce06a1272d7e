'use strict'

// HTTP/2 and WebSocket clients across an in-place upgrade (SIGUSR2): the
// adopted worker drains as on SIGHUP, through its control channel carried
// over the execve. One worker (-w 1): a new connection can only reach the
// new worker.
const t = require('tap')
const crypto = require('node:crypto')
const path = require('node:path')
const WebSocket = require('ws')
const { FIXTURES, alive, freePort, processesWith, sleep, startCli, waitFor } = require('../helpers')
const { h2Paced } = require('../protocol-clients')

const app = path.join(FIXTURES, 'protocols.js')
const msgs = (sup, re) => sup.lines.filter(l => typeof l.msg === 'string' && re.test(l.msg))

async function startApp (t, protocol, env = {}) {
  const port = await freePort()
  const marker = `reuseport-upgrade-${crypto.randomUUID()}`
  const sup = await startCli(['-w', '1', '-o', '-a', '127.0.0.1', '-p', String(port), app], { env: { REUSEPORT_TEST_MARKER: marker, PROTOCOL: protocol, TLS_KEY: '', TLS_CERT: '', ...env } })
  t.teardown(async () => {
    await sup.stop('SIGKILL')
    for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
  })
  return { sup, port, origin: `http://127.0.0.1:${port}` }
}

t.test('HTTP/2 cleartext: a request every 50 ms across SIGUSR2, 0 failed; GOAWAY from the adopted worker, then the new one', async t => {
  const { sup, origin } = await startApp(t, 'h2c')
  const pid = sup.child.pid
  const [old] = sup.workerPids()
  const running = h2Paced({ origin, durationMs: 5000 })
  await sleep(1200)
  sup.child.kill('SIGUSR2')
  await waitFor(() => msgs(sup, /^upgrade: done/).length === 1, { timeout: 20000, what: 'the upgrade' })
  const r = await running
  t.same({ failed: r.requests - r.ok, errors: r.errors }, { failed: 0, errors: {} }, `${r.requests} requests, 0 failed; refused streams retried: ${r.retried}`)
  const [next] = sup.workerPids()
  t.ok(r.samples.some(s => s.pid === old) && r.samples.some(s => s.pid === next), 'served by the adopted worker, then by the new one')
  t.ok(r.sessions.length >= 2 && r.sessions[0].goawayAt !== null, 'the first session got GOAWAY')
  t.equal(sup.child.pid, pid, 'same supervisor pid')
  await waitFor(() => !alive(old), { what: 'the adopted worker to exit' })
})

t.test('WebSocket: told 1001 by the adopted worker as it drains, and reconnected to the new one', async t => {
  const { sup, port } = await startApp(t, 'http', { DRAIN_HOOK: '1' })
  const connect = () => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`)
    ws.once('message', m => resolve({ ws, pid: JSON.parse(String(m)).pid }))
    ws.once('error', reject)
  })
  const [old] = sup.workerPids()
  const first = await connect()
  t.equal(first.pid, old)
  const closed = new Promise(resolve => first.ws.once('close', code => resolve(code)))
  sup.child.kill('SIGUSR2')
  const code = await closed
  t.ok(code === 1001 || code === 1012, `close code ${code}`)
  await waitFor(() => msgs(sup, /^upgrade: done/).length === 1, { timeout: 20000, what: 'the upgrade' })
  const second = await connect()
  t.not(second.pid, old, 'the reconnection reached the new worker')
  await waitFor(() => !alive(old), { what: 'the adopted worker to exit' })
  t.same(sup.workerPids(), [second.pid], 'the new worker is the only one')
  second.ws.close()
  t.ok(msgs(sup, /^onDrain hook ran$/).some(l => l.pid === old), 'the app\'s onDrain hook ran in the adopted worker, its log line forwarded')
})
