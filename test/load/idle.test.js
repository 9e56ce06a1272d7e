'use strict'

// An idle fleet pays for health slowly (lib/common/cadence.ts): workers send a
// heartbeat every few seconds, the supervisor ticks twice a second and a
// thread of the addon waits for a connection on its sockets. What must still hold: a worker stalled while idle is steered out
// once connections wait at it, and the first connections at an idle worker
// are reported at once, not at its next heartbeat.
const t = require('tap')
const crypto = require('node:crypto')
const fs = require('node:fs')
const net = require('node:net')
const path = require('node:path')
const { request } = require('undici')
const { FIXTURES, freePort, processesWith, sleep, startCli, waitFor } = require('../helpers')

const app = path.join(FIXTURES, 'app.js')

/** The supervisor's thread that waits for a connection while the fleet idles (native/readable.cc). */
function watching (pid) {
  return fs.readdirSync(`/proc/${pid}/task`).some(tid => {
    try { return fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() === 'reuseport-idle' } catch { return false }
  })
}

async function startIdle (t, args = []) {
  const port = await freePort()
  const metricsPort = await freePort()
  const marker = `reuseport-test-${crypto.randomUUID()}`
  const sup = await startCli(['-w', '2', '-a', '127.0.0.1', '-p', String(port), '--metrics-port', String(metricsPort), ...args, app],
    { env: { REUSEPORT_TEST_MARKER: marker } })
  t.teardown(async () => {
    for (const pid of sup.workerPids()) try { process.kill(pid, 'SIGCONT') } catch {}
    await sup.stop('SIGKILL')
    for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
  })
  // Long enough for every worker to report idle and the supervisor to tick slowly.
  await sleep(1500)
  return { sup, port, metricsPort }
}

t.test('a worker stopped while idle is steered out once connections wait at it', async t => {
  const { sup, port } = await startIdle(t, ['-l', 'debug'])
  const [stopped, other] = sup.workerPids()
  const slot = sup.lines.find(l => l.workerPid === stopped && /serving/.test(l.msg))?.slot
  await waitFor(() => watching(sup.child.pid), { timeout: 3000, what: 'the idle supervisor to watch its sockets' })
  process.kill(stopped, 'SIGSTOP')
  const began = Date.now()
  // New connections: the kernel hashes about half of them to the stopped worker's queue.
  const first = Array.from({ length: 20 }, () => request(`http://127.0.0.1:${port}/`, { reset: true, headersTimeout: 20000 })
    .then(async r => ({ status: r.statusCode, pid: JSON.parse(await r.body.text()).pid }), err => ({ error: err.code ?? err.message })))
  await waitFor(() => sup.lines.some(l => /: stalled \(/.test(l.msg)), { timeout: 3000, what: 'a stalled line' })
  const after = Date.now() - began
  const [line] = sup.lines.filter(l => /: stalled \(/.test(l.msg))
  t.equal(line.slot, slot, 'the stopped worker\'s slot')
  t.match(line.msg, /stalled \(event loop silent for \d+ ms, [1-9]\d* connections queued\); steered out$/, 'for the connections waiting at it')
  // Its heartbeat is 5 s apart: silence past --stall-timeout would take 5.5 s.
  t.ok(after < 1500, `steered out ${after} ms after connections began to wait`)
  const woke = sup.lines.findIndex(l => /^a connection queued while every worker idled/.test(l.msg))
  t.ok(woke >= 0 && woke < sup.lines.indexOf(line), 'the watch woke the supervisor before the slot was steered out')
  t.notOk(watching(sup.child.pid), 'and is gone: the supervisor ticks fast while a slot is stalled')
  // New connections now go to the other worker only.
  const next = await Promise.all(Array.from({ length: 10 }, () => request(`http://127.0.0.1:${port}/`, { reset: true, headersTimeout: 5000 })
    .then(async r => JSON.parse(await r.body.text()).pid)))
  t.same([...new Set(next)], [other], 'served by the other worker')
  process.kill(stopped, 'SIGCONT')
  const results = await Promise.all(first)
  t.same(results.filter(r => r.status !== 200), [], 'the connections that waited are served once it runs again')
  t.ok(results.some(r => r.pid === stopped), 'some of them by the worker that was stopped')
  await waitFor(() => sup.lines.some(l => /: recovered; back in rotation$/.test(l.msg)), { timeout: 5000, what: 'recovery' })
})

t.test('connections at an idle worker are reported at once, not at its next heartbeat', async t => {
  const { metricsPort, port } = await startIdle(t)
  const sockets = await Promise.all(Array.from({ length: 4 }, () => new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s)).once('error', reject)
  })))
  t.teardown(() => { for (const s of sockets) s.destroy() })
  const began = Date.now()
  const open = async () => {
    const text = await (await request(`http://127.0.0.1:${metricsPort}/metrics`)).body.text()
    return [...text.matchAll(/^fastify_reuseport_slot_open_connections\{slot="\d+"\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0)
  }
  await waitFor(async () => (await open()) === 4, { timeout: 4000, what: '4 open connections in the metrics' })
  const after = Date.now() - began
  t.ok(after < 1000, `reported ${after} ms after they opened (the idle heartbeat is 5 s)`)
})
