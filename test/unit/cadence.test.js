'use strict'

// How often health is paid for (lib/common/cadence.ts), and the stall rules read
// against an idle worker's slow heartbeat (lib/policy.ts): pure functions.
const t = require('tap')
const { IDLE_REPORT_MS, IDLE_TICK_MS, alignedDelayMs, idleReportMs, nextReportMs, silentMs, tickMs } = require('../../dist/lib/common/cadence')
const { stallReason, recovered, freshStallMemory } = require('../../dist/lib/supervisor/policy')

t.test('nextReportMs: fast while serving or just served, the heartbeat when idle', async t => {
  t.equal(nextReportMs({ open: 0, acceptedSince: 0, woken: false }, 50, 1000), 1000, 'idle')
  t.equal(nextReportMs({ open: 1, acceptedSince: 0, woken: false }, 50, 1000), 50, 'a connection open')
  t.equal(nextReportMs({ open: 0, acceptedSince: 3, woken: false }, 50, 1000), 50, 'short connections came and went')
  t.equal(nextReportMs({ open: 0, acceptedSince: 0, woken: true }, 50, 1000), 50, 'woken by a connection not yet counted')
})

t.test('idleReportMs: 4 heartbeats per --worker-timeout, never below healthMs', async t => {
  t.equal(idleReportMs(50, 30000), IDLE_REPORT_MS)
  t.equal(idleReportMs(50, 0), IDLE_REPORT_MS, 'no --worker-timeout')
  t.equal(idleReportMs(50, 1500), 375)
  t.equal(idleReportMs(50, 8000), Math.min(IDLE_REPORT_MS, 2000))
  t.equal(idleReportMs(250, 400), 250)
})

t.test('alignedDelayMs: to the next multiple of the period on the wall clock, never more than the period', async t => {
  t.equal(alignedDelayMs(1_700_000_001_234, 5000), 3766)
  t.equal(alignedDelayMs(1_700_000_000_000, 5000), 5000, 'on a boundary: the next one')
  t.equal(alignedDelayMs(1_700_000_004_999, 5000), 1)
  const workers = [1_700_000_000_100, 1_700_000_002_700, 1_700_000_004_321].map(now => now + alignedDelayMs(now, 5000))
  t.same(new Set(workers).size, 1, 'workers that went idle at different times beat together')
})

t.test('silentMs: silence past the announced cadence', async t => {
  t.equal(silentMs(10000, 9900, 50, 50), 100, 'busy: raw silence')
  t.equal(silentMs(10000, 9100, 1000, 50), -50, 'idle: a heartbeat due in 50 ms is on time')
  t.equal(silentMs(10000, 8000, 1000, 50), 1050)
})

t.test('tickMs: slow only when every slot idles with an empty queue and nothing is in flight', async t => {
  const idle = { idle: true, queued: 0, stalled: false }
  t.equal(tickMs([idle, idle], false, 20), IDLE_TICK_MS)
  t.equal(tickMs([idle, { ...idle, idle: false }], false, 20), 20, 'one worker busy')
  t.equal(tickMs([idle, { ...idle, queued: 1 }], false, 20), 20, 'a connection queued')
  t.equal(tickMs([idle, { ...idle, stalled: true }], false, 20), 20, 'a slot stalled')
  t.equal(tickMs([idle, idle], true, 20), 20, 'a reload or a worker starting')
  t.equal(tickMs([idle], false, 600), 600, 'never faster than the fast cadence')
})

const limits = { stallTimeout: 500, stallQueue: 32, healthMs: 50 }
const sample = (over = {}) => ({ now: 10000, healthAt: 9300, delayMs: 0, accepted: 5, queued: 0, reportMs: 1000, ...over })

t.test('stallReason: an idle worker on its heartbeat is not silent', async t => {
  t.equal(stallReason(sample(), freshStallMemory(), limits).reason, null, '700 ms since a 1000 ms heartbeat')
  t.equal(stallReason(sample({ healthAt: 8600 }), freshStallMemory(), limits).reason, null, '1400 ms: 450 past its cadence, within stallTimeout')
  t.match(stallReason(sample({ healthAt: 8400 }), freshStallMemory(), limits).reason, /silent for 1600 ms/, 'past stallTimeout beyond its cadence')
  t.ok(recovered(sample(), null, 50), 'reports on time, for its cadence')
})

t.test('stallReason: a connection waiting at an idle worker that sends nothing', async t => {
  let { reason, memory } = stallReason(sample({ queued: 1 }), freshStallMemory(), limits)
  t.equal(reason, null, 'first seen')
  t.equal(memory.queuedSince, 10000)
  ;({ reason } = stallReason(sample({ queued: 1, now: 10100 }), memory, limits))
  t.equal(reason, null, '100 ms: within two intervals')
  ;({ reason } = stallReason(sample({ queued: 1, now: 10120 }), memory, limits))
  t.match(reason, /^event loop silent for 820 ms, 1 connections queued$/, 'one connection that does not grow, no report since it queued')
  ;({ reason } = stallReason(sample({ queued: 1, now: 10120, healthAt: 10005, reportMs: 50 }), memory, limits))
  t.equal(reason, null, 'the worker reported after the connection queued: it is serving')
  ;({ memory } = stallReason(sample({ queued: 0, now: 10120 }), memory, limits))
  t.equal(memory.queuedSince, null, 'forgotten once the queue empties')
})
