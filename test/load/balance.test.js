'use strict'

// A few long-lived keep-alive connections carry all the traffic (a proxy's
// pool). The kernel's hash splits 4 connections on 2 workers 3-1 or 4-0 in
// 62.5% of cases, for good; with --balance on, steering and graceful
// shedding settle them evenly, failing no request.
const t = require('tap')
const crypto = require('node:crypto')
const http = require('node:http')
const path = require('node:path')
const { FIXTURES, freePort, processesWith, sleep, startCli, waitFor } = require('../helpers')

const app = path.join(FIXTURES, 'app.js')

/**
 * `connections` keep-alive sockets sending requests back to back for
 * durationMs. Returns, for the sockets still open at the end, which worker
 * each one talks to, and every request's fate.
 */
async function pool (port, connections, durationMs) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections })
  const last = new Map()
  let ok = 0
  let failed = 0
  const deadline = Date.now() + durationMs
  const one = () => new Promise(resolve => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent }, res => {
      // Detached from the response by 'end'.
      const socket = res.socket
      let body = ''
      res.setEncoding('utf8')
      res.on('data', d => { body += d })
      res.on('end', () => {
        try {
          last.set(socket, JSON.parse(body).pid)
          ok++
        } catch { failed++ }
        resolve()
      })
    })
    req.on('error', () => { failed++; resolve() })
  })
  await Promise.all(Array.from({ length: connections }, async () => { while (Date.now() < deadline) await one() }))
  const open = [...last].filter(([socket]) => !socket.destroyed)
  const perPid = {}
  for (const [, pid] of open) perPid[pid] = (perPid[pid] ?? 0) + 1
  agent.destroy()
  return { ok, failed, open: open.length, perPid }
}

async function startApp (t, workers, args = []) {
  const port = await freePort()
  const metricsPort = await freePort()
  const marker = `reuseport-test-${crypto.randomUUID()}`
  const sup = await startCli(['-w', String(workers), '-a', '127.0.0.1', '-p', String(port), '--metrics-port', String(metricsPort), ...args, app],
    { env: { REUSEPORT_TEST_MARKER: marker } })
  t.teardown(async () => {
    await sup.stop('SIGKILL')
    for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
  })
  const idle = async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
    return [...text.matchAll(/fastify_reuseport_slot_open_connections\{slot="\d+"\} (\d+)/g)].every(m => m[1] === '0')
  }
  return { sup, port, metricsPort, idle }
}

// 4 workers on 2 cores take more sheds, and more time, to even out.
for (const [workers, connections, trials, ms] of [[2, 4, 10, 2500], [4, 8, 6, 4000]]) {
  t.test(`${workers} workers, ${connections} keep-alive connections: every trial settles even within ${ms / 1000} s`, async t => {
    const { sup, port, metricsPort, idle } = await startApp(t, workers)
    const workerPids = sup.workerPids()
    const spreads = []
    let failed = 0
    for (let trial = 0; trial < trials; trial++) {
      // Fresh connections on an idle server: the hash deals them anew.
      await waitFor(idle, { timeout: 5000, what: 'the previous trial\'s connections to close' })
      // Idle for longer than evenHoldMs (1 s): the shed pause resets, each trial starts afresh.
      await sleep(1300)
      const r = await pool(port, connections, ms)
      failed += r.failed
      const counts = workerPids.map(pid => r.perPid[pid] ?? 0)
      spreads.push(counts.join('-'))
      t.equal(r.open, connections, `trial ${trial + 1}: ${connections} connections open at the end`)
      t.ok(Math.max(...counts) - Math.min(...counts) <= (workers === 2 ? 0 : 1), `trial ${trial + 1}: settled at ${counts.join('-')}`)
    }
    t.equal(failed, 0, `no failed request while rebalancing (splits: ${spreads.join(', ')})`)
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
    t.match(text, /^fastify_reuseport_imbalance \d/m, 'the imbalance gauge is served')
    // The hash deals every trial evenly by itself with probability 0.375^10 (2 workers) or less.
    const sheds = sup.lines.filter(l => /: holds \d+ of \d+ connections; ending \d+ kept-alive at their next response$/.test(l.msg ?? ''))
    t.ok(sheds.length > 0, `sheds happened and are logged (${sheds.length})`)
  })
}

t.test('the control: --balance off leaves the hash\'s split', async t => {
  const { sup, port, idle } = await startApp(t, 2, ['--balance', 'off'])
  const workerPids = sup.workerPids()
  const splits = []
  for (let trial = 0; trial < 10; trial++) {
    await waitFor(idle, { timeout: 5000, what: 'the previous trial\'s connections to close' })
    const r = await pool(port, 4, 600)
    splits.push(workerPids.map(pid => r.perPid[pid] ?? 0).sort().join('-'))
  }
  // 2-2 has probability 37.5% per trial: 10 even trials in a row, 1 in 18,000.
  t.ok(splits.some(s => s !== '2-2'), `the kernel's hash alone is uneven in some trial: ${splits.join(', ')}`)
  t.notOk(sup.lines.some(l => /kept-alive at their next response$/.test(l.msg ?? '')), 'nothing is shed')
})
