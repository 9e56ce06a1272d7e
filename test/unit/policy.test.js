'use strict'

// The supervisor's decisions, as pure functions over samples: no process.
const t = require('tap')
const {
  stallReason, recovered, mayStall, freshStallMemory, replaceReason, requestLimit, nextReplacement,
  failuresAfterExit, healthySlot, respawnDelay, crashLooping, lastServed, mayShed, parseSize, formatSize, SETTLED_MS
} = require('../../dist/lib/supervisor/policy')

const limits = { stallTimeout: 500, stallQueue: 32, healthMs: 50 }
const sample = (over = {}) => ({ now: 10000, healthAt: 10000, delayMs: 1, accepted: 100, queued: 0, ...over })

t.test('stallReason: a healthy slot is not stalled', async t => {
  const { reason, memory } = stallReason(sample(), freshStallMemory(), limits)
  t.equal(reason, null)
  t.same(memory, { lastQueued: 0, queueFull: null, queuedSince: null })
})

t.test('stallReason: silence while the queue grows is caught after two intervals', async t => {
  const memory = { lastQueued: 2, queueFull: null, queuedSince: 9990 }
  t.equal(stallReason(sample({ healthAt: 9920, queued: 3 }), memory, limits).reason, null, '80 ms: within two intervals')
  t.match(stallReason(sample({ healthAt: 9890, queued: 3 }), memory, limits).reason, /^event loop silent for 110 ms, 3 connections queued$/)
  t.equal(stallReason(sample({ healthAt: 9890, queued: 2 }), memory, limits).reason, null, 'a queue that does not grow needs stallTimeout')
})

t.test('stallReason: silence or delay past stallTimeout', async t => {
  t.match(stallReason(sample({ healthAt: 9400 }), freshStallMemory(), limits).reason, /silent for 600 ms/)
  t.match(stallReason(sample({ delayMs: 700.4 }), freshStallMemory(), limits).reason, /^event loop delay 700 ms$/)
})

t.test('stallReason: a full queue counts only while nothing is accepted', async t => {
  let memory = freshStallMemory()
  ;({ memory } = stallReason(sample({ queued: 40, now: 10000 }), memory, limits))
  t.same(memory.queueFull, { since: 10000, accepted: 100 }, 'remembers when it filled')
  const accepting = stallReason(sample({ queued: 40, now: 10200, healthAt: 10190, accepted: 180 }), memory, limits)
  t.equal(accepting.reason, null, 'saturated but accepting: not stalled')
  const stuck = stallReason(sample({ queued: 40, now: 10200, healthAt: 10190, accepted: 100 }), memory, limits)
  t.equal(stuck.reason, '40 connections queued, none accepted')
  t.equal(stallReason(sample({ queued: 3 }), memory, limits).memory.queueFull, null, 'forgotten once the queue is short')
})

t.test('recovered: only with no reason, an empty queue and reports on time', async t => {
  t.ok(recovered(sample(), null, 50))
  t.notOk(recovered(sample({ queued: 1 }), null, 50))
  t.notOk(recovered(sample({ healthAt: 9800 }), null, 50))
  t.notOk(recovered(sample(), 'event loop delay 700 ms', 50))
})

t.test('mayStall: never the last healthy slot', async t => {
  t.ok(mayStall(0, new Set([0, 1])))
  t.notOk(mayStall(0, new Set([0])))
  t.notOk(mayStall(0, new Set()))
  t.ok(mayStall(0, new Set([1])))
})

const worker = (over = {}) => ({ now: 100000, healthAt: 100000, rss: 100e6, requests: 10, requestLimit: 0, ...over })
const replaceLimits = { workerTimeout: 30000, maxMemory: 512 * 1024 ** 2 }

t.test('replaceReason: hung, memory, requests, or nothing', async t => {
  t.equal(replaceReason(worker(), replaceLimits), null)
  t.same(replaceReason(worker({ healthAt: 69000 }), replaceLimits), { reason: 'hung', detail: 'no health report for 31000 ms' })
  t.equal(replaceReason(worker({ healthAt: 69000 }), { ...replaceLimits, workerTimeout: 0 }), null, 'workerTimeout 0 turns it off')
  t.same(replaceReason(worker({ rss: 600 * 1024 ** 2 }), replaceLimits), { reason: 'memory', detail: 'RSS 600M over --max-memory 512M' })
  t.equal(replaceReason(worker({ rss: 600 * 1024 ** 2 }), { ...replaceLimits, maxMemory: 0 }), null, 'no memory limit')
  t.same(replaceReason(worker({ requests: 1000, requestLimit: 1000 }), replaceLimits), { reason: 'requests', detail: 'served 1000 requests, limit 1000' })
  t.equal(replaceReason(worker({ requests: 999, requestLimit: 1000 }), replaceLimits), null)
  t.equal(replaceReason(worker({ healthAt: 0, rss: 1e12 }), replaceLimits).reason, 'hung', 'a hang wins over the graceful reasons')
})

t.test('requestLimit: max plus a jitter of 0..n, as gunicorn', async t => {
  t.equal(requestLimit(0, 50, 0.5), 0, 'off')
  t.equal(requestLimit(1000, 0, 0.99), 1000)
  t.equal(requestLimit(1000, 50, 0), 1000)
  t.equal(requestLimit(1000, 50, 0.9999), 1050)
  const limits = new Set(Array.from({ length: 200 }, (_, i) => requestLimit(100, 10, i / 200)))
  t.equal(limits.size, 11, 'every value of 100..110 is reachable')
})

t.test('nextReplacement: one at a time; a hang pre-empts', async t => {
  const memory = { slot: 1, reason: 'memory' }
  const hung = { slot: 2, reason: 'hung' }
  t.same(nextReplacement([memory], false), memory)
  t.equal(nextReplacement([memory], true), null, 'a graceful replacement waits while another runs')
  t.same(nextReplacement([memory, hung], true), hung, 'a hang does not wait')
  t.same(nextReplacement([memory, hung], false), hung, 'and goes first')
  t.equal(nextReplacement([], false), null)
})

t.test('respawn: at once after serving, backoff after early deaths', async t => {
  t.equal(failuresAfterExit(3, SETTLED_MS, 0), 0, 'settled: failures reset')
  t.equal(respawnDelay(failuresAfterExit(3, 60000, 0)), 0, 'and respawned at once')
  t.equal(failuresAfterExit(3, 300, 12), 0, 'served connections, however briefly: respawned at once (its queue needs a worker)')
  t.equal(failuresAfterExit(0, null, 0), 1, 'died before it was ready')
  t.equal(failuresAfterExit(2, 100, 0), 3, 'died soon after, having served nothing')
  t.equal(failuresAfterExit(2, null, 5), 3, 'not ready: whatever it counted')
  t.same([1, 2, 3, 4, 8, 20].map(respawnDelay), [100, 200, 400, 800, 10000, 10000])
})

t.test('healthySlot: a slot whose workers died early is on probation until one settles', async t => {
  t.ok(healthySlot(10, 0), 'no early death: healthy from the start')
  t.notOk(healthySlot(300, 2), 'ready 300 ms after two early deaths: not yet')
  t.ok(healthySlot(SETTLED_MS, 2), 'settled')
})

t.test('crashLooping: only when nothing serves for the whole timeout', async t => {
  t.notOk(crashLooping(true, 0, 100000, 30000), 'a slot serves')
  t.notOk(crashLooping(false, 80000, 100000, 30000), 'not long enough')
  t.ok(crashLooping(false, 60000, 100000, 30000))
  t.notOk(crashLooping(false, 0, 100000, 0), '0 turns it off')
})

t.test('parseSize and formatSize', async t => {
  t.equal(parseSize('512M'), 512 * 1024 ** 2)
  t.equal(parseSize('1G'), 1024 ** 3)
  t.equal(parseSize('1.5g'), 1.5 * 1024 ** 3)
  t.equal(parseSize('300000000'), 300000000)
  t.equal(parseSize('64MB'), 64 * 1024 ** 2)
  for (const bad of ['', 'M', '-1G', '1X', '0', 'lots']) t.equal(parseSize(bad), null, `'${bad}' is not a size`)
  t.equal(formatSize(600 * 1024 ** 2), '600M')
  t.equal(formatSize(512), '512B')
})

t.test('lastServed: a slot that keeps dying 300 ms after ready does not count as serving', async t => {
  t.equal(lastServed(100, 500, [{ readyForMs: 50, earlyDeaths: 0 }]), 500, 'a first worker serves')
  t.equal(lastServed(100, 500, [{ readyForMs: 50, earlyDeaths: 3 }]), 100, 'a respawn after early deaths: just ready is not serving')
  t.equal(lastServed(100, 500, []), 100, 'nothing ready')
  t.equal(lastServed(100, 9000, [{ readyForMs: SETTLED_MS, earlyDeaths: 3 }]), 9000, 'settled again')
})

// The supervisor's loop, as a timeline: a worker boots in 200 ms, is ready,
// and throws 300 ms later; it is respawned after respawnDelay(failures); the
// rule is checked every 100 ms (lib/supervisor/monitor.ts, decide()).
function crashLoopExit (timeout, { bootMs = 200, lifeMs = 300, tickMs = 100, limit = 120000 } = {}) {
  let failures = 0
  let earlyDeaths = 0
  let readyAt = 0
  let diesAt = readyAt + lifeMs
  let nextReadyAt = null
  let lastServedAt = 0
  for (let now = 0; now < limit; now += tickMs) {
    if (readyAt !== null && now >= diesAt) {
      failures = failuresAfterExit(failures, now - readyAt, 0)
      earlyDeaths++
      readyAt = null
      nextReadyAt = now + respawnDelay(failures) + bootMs
    }
    if (readyAt === null && nextReadyAt !== null && now >= nextReadyAt) {
      readyAt = now
      diesAt = now + lifeMs
    }
    const ready = readyAt === null ? [] : [{ readyForMs: now - readyAt, earlyDeaths }]
    lastServedAt = lastServed(lastServedAt, now, ready)
    if (crashLooping(lastServedAt === now, lastServedAt, now, timeout)) return now
  }
  return null
}

t.test('crash loop: an app throwing 300 ms after ready exits within --crash-loop-timeout + 1 s', async t => {
  for (const timeout of [2000, 4000, 30000]) {
    const at = crashLoopExit(timeout)
    t.ok(at !== null && at <= timeout + 1000, `--crash-loop-timeout ${timeout}: exit at ${at} ms`)
  }
  t.equal(crashLoopExit(0), null, '0 disables it')
})

t.test('mayShed: no shed while a slot is about to be drained or replaced', async t => {
  const calm = { retiring: false, starting: false }
  t.ok(mayShed([calm, calm], false), 'nothing changing')
  t.notOk(mayShed([calm, calm], true), 'a reload, replacement or scale change under way or queued')
  t.notOk(mayShed([calm, { retiring: false, starting: true }], false), 'a replacement or respawn starting')
  t.notOk(mayShed([{ retiring: true, starting: false }, calm], false), 'a slot retiring')
})
