'use strict'

// Self-healing workers (--worker-timeout, --max-memory, --max-requests): a
// worker is replaced on its slot's socket, so no queued connection is lost.
const t = require('tap')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { request } = require('undici')
const { FIXTURES, alive, freePort, load, paced, processesWith, sleep, startCli, waitFor } = require('../helpers')

const app = path.join(FIXTURES, 'leaky.js')

async function startApp (t, args, env = {}) {
  const port = await freePort()
  const metricsPort = await freePort()
  const marker = `reuseport-test-${crypto.randomUUID()}`
  const sup = await startCli(['-a', '127.0.0.1', '-p', String(port), '--metrics-port', String(metricsPort), ...args, app],
    { env: { REUSEPORT_TEST_MARKER: marker, ...env } })
  t.teardown(async () => {
    await sup.stop('SIGKILL')
    for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
  })
  return { sup, url: `http://127.0.0.1:${port}`, metrics: `http://127.0.0.1:${metricsPort}/metrics`, marker }
}

const matching = (sup, re) => sup.lines.filter(l => typeof l.msg === 'string' && re.test(l.msg))

/** Replacements never overlap: between "replacing" and its outcome, no other starts. */
function overlaps (sup) {
  let open = null
  let overlap = 0
  for (const l of sup.lines) {
    if (typeof l.msg !== 'string') continue
    if (/: replacing worker \d+ \((memory|requests)/.test(l.msg)) {
      if (open !== null) overlap++
      open = l.slot
    } else if (/ready, draining \d+ \((memory|requests)\)$|replacement failed/.test(l.msg)) {
      open = null
    }
  }
  return overlap
}

t.test('a hung worker is killed and replaced; its queued connections are served', async t => {
  const timeout = 1500
  const { sup, url, metrics } = await startApp(t, ['-w', '2', '--worker-timeout', String(timeout)])
  const loads = paced({ url, rate: 100, durationMs: 6000, timeoutMs: 15000 })
  await sleep(1000)
  const hangStart = Date.now()
  // Its own connection is the one the hung worker accepted itself: it is lost.
  const hung = request(`${url}/block?ms=60000`, { reset: true, headersTimeout: 15000 }).then(() => 'answered', err => err.code ?? err.name)
  await waitFor(() => matching(sup, /: replacing worker \d+ \(hung: no health report for \d+ ms\); killed/).length === 1, { timeout: timeout + 3000, what: 'the hung worker to be replaced' })
  const replacedAfter = Date.now() - hangStart
  const [line] = matching(sup, /: replacing worker \d+ \(hung/)
  t.ok(replacedAfter < timeout + 1000, `replaced ${replacedAfter} ms after it hung (--worker-timeout ${timeout})`)
  t.match(line, { reason: 'hung', slot: Number })
  await waitFor(() => !alive(line.workerPid), { timeout: 2000, what: 'the hung worker to be gone' })
  await waitFor(() => matching(sup, new RegExp(`^slot ${line.slot + 1} of 2: worker \\d+ ready$`)).length === 1, { timeout: 5000, what: 'its replacement' })
  const r = await loads
  t.not(await hung, 'answered', 'the request the hung worker held is lost')
  // The hung worker may have accepted a few more connections in the loop
  // turn that ran the blocking handler: those are its own, lost with it.
  // Anything that started later was queued or steered, and must be served.
  const late = r.failures.filter(f => f.start > hangStart + 50)
  t.same(late, [], `no request that started after the hang failed (${r.requests} sent; ${r.failures.length} started with it and died with the hung worker)`)
  t.ok(r.failures.length <= 3, `at most a few lost with the hung worker: ${JSON.stringify(r.errors)}`)
  // Connections that waited in the hung slot's queue were served by the
  // hand-off or the replacement: none waited for the hang itself (60 s).
  const during = r.samples.filter(s => s.start >= hangStart && s.start < hangStart + timeout)
  const slowest = Math.max(...r.samples.map(s => s.ms))
  t.ok(during.length > 50, `${during.length} requests started while it hung`)
  t.ok(slowest < timeout + 1500, `the slowest request took ${slowest} ms`)
  const text = await (await request(metrics)).body.text()
  t.match(text, `fastify_reuseport_slot_replacements_total{slot="${line.slot}",reason="hung"} 1`)
  t.equal(matching(sup, /: replacing worker/).length, 1, 'logged once')
})

t.test('SIGTERM does not wait the grace delay for a hung worker', async t => {
  const { sup, url } = await startApp(t, ['-w', '2', '-g', '10000'])
  request(`${url}/block?ms=60000`, { reset: true }).catch(() => {})
  await sleep(1500)
  const began = Date.now()
  const { code } = await sup.stop('SIGTERM')
  const took = Date.now() - began
  t.equal(code, 0, 'a clean exit')
  t.ok(took < 5000, `exited in ${took} ms, not -g (10000 ms)`)
  t.ok(matching(sup, /is hung \(no health report for \d+ ms\): killed instead of drained$/).length === 1, 'says why')
})

t.test('--max-memory replaces a leaking worker gracefully under load', async t => {
  const { sup, url, metrics } = await startApp(t, ['-w', '2', '--max-memory', '160M'], { REUSEPORT_LEAK_KB: '64' })
  const [keepAlive, fresh] = await Promise.all([
    load({ url, durationMs: 7000, connections: 4, keepAlive: true }),
    load({ url, durationMs: 7000, connections: 4, keepAlive: false })
  ])
  const replaced = matching(sup, /: replacing worker \d+ \(memory: RSS [\d.]+M over --max-memory 160M\); draining it once the new one is ready$/)
  t.ok(replaced.length >= 2, `${replaced.length} replacements for memory`)
  t.equal(keepAlive.failed + fresh.failed, 0, `no failed request (${keepAlive.requests} keep-alive, ${fresh.requests} new connections): ${JSON.stringify([keepAlive.errors, fresh.errors])}`)
  t.equal(overlaps(sup), 0, 'never two replacements at once')
  const text = await (await request(metrics)).body.text()
  const total = [...text.matchAll(/fastify_reuseport_slot_replacements_total\{slot="\d",reason="memory"\} (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0)
  t.equal(total, replaced.length, 'counted in /metrics')
})

t.test('--max-requests recycles workers one at a time under load', async t => {
  const { sup, url } = await startApp(t, ['-w', '2', '--max-requests', '400', '--max-requests-jitter', '100'])
  const events = []
  const [keepAlive, fresh] = await Promise.all([
    load({ url, durationMs: 7000, connections: 4, keepAlive: true }),
    load({ url, durationMs: 7000, connections: 4, keepAlive: false })
  ])
  const recycled = matching(sup, /: replacing worker \d+ \(requests: served \d+ requests, limit (\d+)\)/)
  t.ok(recycled.length >= 3, `${recycled.length} recycles`)
  for (const l of recycled) {
    const limit = Number(/limit (\d+)/.exec(l.msg)[1])
    events.push(limit)
  }
  t.ok(events.every(n => n >= 400 && n <= 500), `limits within 400..500: ${events.join(', ')}`)
  t.equal(keepAlive.failed + fresh.failed, 0, `no failed request (${keepAlive.requests} keep-alive, ${fresh.requests} new connections): ${JSON.stringify([keepAlive.errors, fresh.errors])}`)
  t.equal(overlaps(sup), 0, 'never two slots at once')
})

t.test('a replacement that fails to boot leaves the old worker serving', async t => {
  const boots = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-boots-'))
  t.teardown(() => fs.rmSync(boots, { recursive: true, force: true }))
  const { sup, url, metrics: metricsUrl } = await startApp(t, ['-w', '2', '--max-memory', '120M'],
    { REUSEPORT_LEAK_KB: '256', REUSEPORT_BOOTS_DIR: boots, REUSEPORT_BOOTS_ALLOWED: '2' })
  const before = sup.workerPids().sort()
  await waitFor(async () => {
    await load({ url, durationMs: 300, connections: 2, keepAlive: true })
    return matching(sup, /replacement failed: Worker for slot \d failed to start: this deploy is broken/).length > 0
  }, { timeout: 15000, what: 'a failed replacement' })
  const failedLine = matching(sup, /replacement failed/)[0]
  t.match(failedLine.msg, /; keeping worker \d+$/)
  const r = await load({ url, durationMs: 1000, connections: 4, keepAlive: false })
  t.equal(r.failed, 0, 'the old workers keep serving')
  t.same(Object.keys(r.pids).map(Number).sort(), before, 'the same workers')
  const metrics = await (await request(metricsUrl)).body.text()
  const serving = [...metrics.matchAll(/fastify_reuseport_slot_pid\{slot="\d"\} (\d+)/g)].map(m => Number(m[1])).sort()
  t.same(serving, before, `the slots are still served by the old workers: ${serving}`)
})
