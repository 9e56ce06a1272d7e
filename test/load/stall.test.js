'use strict'

// One worker blocks its event loop for 3 s under load. With stall-aware
// steering the supervisor steers its slot out, so new connections stop
// waiting behind it; with it off (the control) they wait.
const t = require('tap')
const crypto = require('node:crypto')
const path = require('node:path')
const { request } = require('undici')
const { FIXTURES, freePort, paced, processesWith, sleep, startCli, waitFor } = require('../helpers')

const app = path.join(FIXTURES, 'app.js')

async function scrape (port) {
  const res = await request(`http://127.0.0.1:${port}/metrics`)
  return { type: res.headers['content-type'], text: await res.body.text() }
}

for (const steering of [true, false]) {
  t.test(`a blocked worker, stall-aware steering ${steering ? 'on' : 'off'}`, async t => {
    const port = await freePort()
    const metricsPort = await freePort()
    const marker = `reuseport-test-${crypto.randomUUID()}`
    const sup = await startCli(['-w', '2', '-a', '127.0.0.1', '-p', String(port), '--metrics-port', String(metricsPort),
      ...(steering ? [] : ['--stall-timeout', '0']), app], { env: { REUSEPORT_TEST_MARKER: marker } })
    t.teardown(async () => {
      await sup.stop('SIGKILL')
      for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
    })
    const url = `http://127.0.0.1:${port}`
    const loads = paced({ url, rate: 100, durationMs: 6000 })
    await sleep(1000)
    const blockStart = Date.now()
    const blocked = request(`${url}/block?ms=3000`, { reset: true }).then(async r => JSON.parse(await r.body.text()))
    let during = null
    if (steering) {
      await waitFor(() => sup.lines.some(l => /: stalled \(/.test(l.msg)), { timeout: 3000, what: 'a stalled line' })
      during = await scrape(metricsPort)
    }
    const { pid } = await blocked
    const blockEnd = Date.now()
    const r = await loads
    t.same({ ok: r.ok, errors: r.errors }, { ok: r.requests, errors: {} }, `no failed request (${r.requests} sent)`)

    const slot = sup.lines.find(l => l.workerPid === pid && /serving/.test(l.msg))?.slot
    t.ok(slot !== undefined, `the blocked worker ${pid} is slot ${slot}`)
    // Requests started well inside the block: how many waited behind the stuck worker?
    const inside = r.samples.filter(s => s.start > blockStart + 800 && s.start < blockEnd - 300)
    const waited = inside.filter(s => s.ms > 1000).length
    t.ok(inside.length > 20, `${inside.length} requests started during the block`)
    if (steering) {
      const stalled = sup.lines.filter(l => /: stalled \(/.test(l.msg))
      t.equal(stalled.length, 1, 'the stall is logged once')
      t.equal(stalled[0].slot, slot, 'for the blocked slot')
      t.match(during.type, /^text\/plain; version=0\.0\.4/)
      t.match(during.text, `fastify_reuseport_slot_state{slot="${slot}",state="stalled"} 1`, 'metrics show the slot stalled')
      t.equal(waited, 0, `no request started during the block waited behind it (${inside.length} started)`)
      await waitFor(() => sup.lines.some(l => /: recovered; back in rotation$/.test(l.msg)), { timeout: 5000, what: 'recovery' })
      const after = await scrape(metricsPort)
      t.match(after.text, `fastify_reuseport_slot_state{slot="${slot}",state="ready"} 1`, 'back to ready')
      t.match(after.text, `fastify_reuseport_slot_stalls_total{slot="${slot}"} 1`)
      t.match(after.text, new RegExp(`fastify_reuseport_slot_accepted_connections_total\\{slot="${slot}"\\} [1-9]\\d*`), 'accepted connections are counted')
    } else {
      t.notOk(sup.lines.some(l => /: stalled \(/.test(l.msg)), 'no stall detection when off')
      t.ok(waited > 0, `the control: ${waited} of ${inside.length} requests waited > 1 s behind the stuck worker`)
    }
  })
}
