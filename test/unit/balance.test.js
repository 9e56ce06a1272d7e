'use strict'

// The balancing decisions, pure: sequences of samples in, decisions out.
const t = require('tap')
const {
  BALANCE_DEFAULTS, imbalance, steeringWeights, steeringState, rebalanceDecision, rebalanceHistory
} = require('../../dist/lib/supervisor/balance')

const slots = (open, { eligible = open.map(() => true), accepted } = {}) =>
  open.map((n, i) => ({ eligible: eligible[i], open: n, ...(accepted ? { accepted: accepted[i] } : {}) }))

/** Calls fn every `step` ms from `from` to `to` (inclusive); returns the last result. */
function run (fn, from, to, step = 50) {
  let last
  for (let now = from; now <= to; now += step) last = fn(now)
  return last
}

t.test('imbalance is busiest ÷ mean', async t => {
  t.equal(imbalance([2, 2]), 1)
  t.equal(imbalance([3, 1]), 1.5)
  t.equal(imbalance([4, 0]), 2)
  t.equal(imbalance([4, 0, 0, 0]), 4)
  t.equal(imbalance([3, 2, 2, 1]), 1.5)
  t.equal(imbalance([0, 0]), 1, 'no connection: even')
  t.equal(imbalance([]), 1, 'no slot: even')
})

t.test('defaults are documented values, frozen', async t => {
  t.ok(Object.isFrozen(BALANCE_DEFAULTS))
  t.same(BALANCE_DEFAULTS, {
    balance: true,
    tolerance: 0.1,
    steerHoldMs: 200,
    evenHoldMs: 1000,
    steerIntervalMs: 250,
    floorShare: 0.05,
    shedMargin: 1,
    shedHoldMs: 500,
    shedCooldownMs: 500,
    shedMaxCooldownMs: 30000,
    shedMaxMean: 16
  })
})

t.test('steering: eligibility alone, as before balancing', async t => {
  const s = steeringState()
  t.equal(steeringWeights(slots([0, 0]), s, 0), null, 'every slot serves: plain hash')
  t.same(steeringWeights(slots([0, 0, 0], { eligible: [true, false, true] }), s, 1), [1, 0, 1], 'a slot out: applied at once')
  t.same(steeringWeights(slots([0, 0, 0], { eligible: [false, false, false] }), s, 2), null, 'nobody serves: the hash, nobody is better')
  t.same(steeringWeights(slots([5, 0], { eligible: [false, true] }), s, 3), [0, 1], 'one slot left')
  const off = steeringState()
  t.same(steeringWeights(slots([3, 1, 0], { eligible: [true, true, false], accepted: [3, 1, 0] }), off, 0, { balance: false }), [1, 1, 0])
  t.equal(run(now => steeringWeights(slots([4, 0], { accepted: [4, 0] }), off, now, { balance: false }), 0, 5000), null, 'balance off: uneven load keeps the hash')
})

t.test('steering: 3–1 on 2 slots with long-lived connections steers most new connections to slot 2', async t => {
  const s = steeringState()
  const sample = now => steeringWeights(slots([3, 1], { accepted: [3, 1] }), s, now)
  t.equal(sample(0), null, 'not at once')
  t.equal(run(sample, 50, 150), null, 'not before steerHoldMs')
  const w = run(sample, 200, 400)
  t.ok(Array.isArray(w), 'attached after steerHoldMs')
  t.same(w, [8, 92], 'the slot below its share gets 92%')
  t.equal(sample(450), w, 'the same array while nothing changes')
  t.equal(run(sample, 500, 5000), w, 'and for as long as the load stays uneven')
  t.ok(s.loadAware)
})

t.test('steering: even load gives null, and load-aware weights give way after evenHoldMs', async t => {
  const s = steeringState()
  t.equal(run(now => steeringWeights(slots([2, 2], { accepted: [2, 2] }), s, now), 0, 3000), null, 'even: nothing attached')
  t.equal(run(now => steeringWeights(slots([4, 2, 1, 1], { accepted: [4, 2, 1, 1] }), s, now), 3050, 3500).join(), '4,4,46,46',
    'slots at their share (2) keep a floor; those below split the rest')
  // A shed: 3 of slot 1's connections close and come back to slots 3 and 4.
  const transient = steeringWeights(slots([2, 2, 1, 1], { accepted: [4, 2, 1, 1] }), s, 3550)
  t.same(transient, [4, 4, 46, 46], 'a change of fewer than 5 points keeps the decision')
  const evenNow = run(now => steeringWeights(slots([2, 2, 2, 2], { accepted: [4, 2, 2, 2] }), s, now), 3600, 3850)
  t.equal(evenNow, null, 'uniform weights over every slot are the plain hash')
  t.ok(s.loadAware, 'still load-aware inside evenHoldMs')
  run(now => steeringWeights(slots([2, 2, 2, 2], { accepted: [4, 2, 2, 2] }), s, now), 3900, 5000)
  t.notOk(s.loadAware, 'back to plain after evenHoldMs of even load')
})

t.test('steering: many short-lived connections, unevenly counted, keep the plain hash', async t => {
  const s = steeringState()
  let accepted = 0
  const decisions = new Set()
  for (let now = 0; now <= 10000; now += 50) {
    accepted += 250 // 5,000 new connections a second
    // Every sample lopsided, and the other way round each time.
    const open = (now / 50) % 2 ? [40, 24] : [24, 40]
    decisions.add(steeringWeights(slots(open, { accepted: [accepted / 2, accepted / 2] }), s, now))
  }
  t.same([...decisions], [null], 'nothing attached in 10 s')
})

t.test('steering: connections that turn short-lived detach load-aware weights at once', async t => {
  const s = steeringState()
  const w = run(now => steeringWeights(slots([30, 10], { accepted: [30, 10] }), s, now), 0, 1000)
  t.same(w, [8, 92], '30–10 long-lived: mostly slot 2')
  let accepted = 40
  const after = run(now => steeringWeights(slots([30, 10], { accepted: [accepted += 50, 0] }), s, now), 1050, 1500)
  t.equal(after, null, 'detached')
})

t.test('steering: eligibility changes bypass the rate limit; load changes respect it', async t => {
  const s = steeringState()
  const long = (open, eligible) => slots(open, { eligible, accepted: open })
  const w1 = run(now => steeringWeights(long([3, 1, 2]), s, now), 0, 400)
  t.same(w1, [8, 85, 8], '3–1–2: slot 2 is below its share of 2')
  const out = steeringWeights(long([3, 1, 2], [true, false, true]), s, 410)
  t.same(out, [10, 0, 90], 'slot 2 stalls: out at once, the load-aware weights re-spread')
  t.equal(steeringWeights(long([3, 1, 3], [true, false, true]), s, 420), out, 'a load change 10 ms later waits')
  const later = steeringWeights(long([3, 1, 3], [true, false, true]), s, 700)
  t.not(later, out, 'after steerIntervalMs it applies')
  t.same(later, [50, 0, 50], 'and is a fresh decision: 3–3 is even')
})

t.test('steering: without accepted counts, open counts alone decide', async t => {
  const s = steeringState()
  t.same(run(now => steeringWeights(slots([4, 0]), s, now), 0, 300), [5, 95])
})

t.test('steering: a tiny material change is ignored', async t => {
  const s = steeringState()
  const w = run(now => steeringWeights(slots([600, 400], { accepted: [600, 400] }), s, now), 0, 1000)
  t.same(w, [17, 83])
  t.equal(run(now => steeringWeights(slots([598, 402], { accepted: [600, 402] }), s, now), 1050, 3000), w, '2 connections moved: same decision')
})

/** The first shed deciding every `step` ms over [from, to], with when it came. */
function firstShed (fn, from, to, step = 50) {
  for (let now = from; now <= to; now += step) {
    const d = fn(now)
    if (d.slot !== null) return { ...d, at: now }
  }
  return null
}

t.test('rebalance: 3–1 on 2 slots sheds 1 from slot 1 after shedHoldMs, then pauses', async t => {
  const h = rebalanceHistory()
  const decide = (open, now, accepted = open) => rebalanceDecision(slots(open, { accepted }), h, now)
  t.match(decide([3, 1], 0), { slot: null, reason: /short-lived/ }, 'no decision before one turnover window')
  t.match(run(now => decide([3, 1], now), 50, 450), { slot: null, reason: /short-lived/ })
  const d = decide([3, 1], 500)
  t.same(d, { slot: 0, count: 1, reason: 'slot 1 of 2 has held 3 connections, 1 above its share of 2, for 500 ms or more' })
  t.equal(h.streak, 1)
  // Steering sent it back to slot 1: still 3–1.
  t.match(decide([3, 1], 950, [4, 1]), { slot: null, reason: 'cooling down after a shed (500 ms)' })
  t.match(decide([3, 1], 1000, [4, 1]), { slot: null, reason: 'no slot has held 1 or more connections above its share of 2 for 500 ms' }, 'the hold starts afresh')
  t.match(firstShed(now => decide([3, 1], now, [4, 1]), 1050, 3000), { slot: 0, count: 1, at: 1450 }, 'second shed')
  t.equal(h.streak, 2)
  t.match(run(now => decide([3, 1], now, [5, 1]), 1500, 2400), { slot: null, reason: 'cooling down after a shed (1000 ms)' }, 'the pause doubles')
  t.match(firstShed(now => decide([3, 1], now, [5, 1]), 2450, 5000), { slot: 0, at: 2450 })
})

t.test('rebalance: the pause doubles up to shedMaxCooldownMs, and resets once even for evenHoldMs', async t => {
  const h = rebalanceHistory()
  const sheds = []
  for (let now = 0; now <= 120000; now += 50) {
    const d = rebalanceDecision(slots([3, 1]), h, now)
    if (d.slot !== null) sheds.push(now)
  }
  const gaps = sheds.slice(1).map((s, i) => s - sheds[i])
  t.same(gaps, [550, 1000, 2000, 4000, 8000, 16000, 30000, 30000], 'hopeless: ever longer pauses, at most 2 sheds a minute')
  run(now => rebalanceDecision(slots([2, 2]), h, now), 120050, 121000)
  t.equal(h.streak, sheds.length, 'even, but not yet for evenHoldMs')
  run(now => rebalanceDecision(slots([2, 2]), h, now), 121050, 121100)
  t.equal(h.streak, 0, 'even for evenHoldMs: the pause resets')
  t.match(firstShed(now => rebalanceDecision(slots([3, 1]), h, now), 121150, 125000), { slot: 0, at: 121650 }, 'the next imbalance is handled after shedHoldMs')
})

t.test('rebalance: with 4 slots the first 3 sheds come at the base pause, then it doubles', async t => {
  const h = rebalanceHistory()
  const sheds = []
  for (let now = 0; now <= 30000; now += 50) {
    if (rebalanceDecision(slots([3, 2, 2, 1]), h, now).slot !== null) sheds.push(now)
  }
  t.same(sheds.slice(1).map((s, i) => s - sheds[i]), [550, 550, 550, 1000, 2000, 4000, 8000])
})

t.test('rebalance: 4 slots, one slot at a time, the furthest above its share first, at most its excess', async t => {
  const h = rebalanceHistory()
  t.match(firstShed(now => rebalanceDecision(slots([3, 4, 1, 0]), h, now), 0, 2000), { slot: 1, count: 2, at: 500 }, 'slot 2 holds 4, share 2')
  t.match(firstShed(now => rebalanceDecision(slots([3, 2, 2, 1]), h, now), 550, 3000), { slot: 0, count: 1, at: 1050 },
    'then slot 1, once its own hold and the pause have passed')
})

t.test('rebalance: nothing when it cannot or need not help', async t => {
  const always = (open, opts, accepted) => {
    const h = rebalanceHistory()
    return firstShed(now => rebalanceDecision(slots(open, accepted ? { accepted } : {}), h, now, opts), 0, 5000) ??
      rebalanceDecision(slots(open, accepted ? { accepted } : {}), h, 5050, opts)
  }
  t.match(always([3, 1], { balance: false }), { slot: null, reason: 'balancing is off' })
  t.match(always([2, 2]), { slot: null, reason: 'the slots are even' })
  t.match(always([2, 1]), { slot: null, reason: 'the slots are even' }, '3 connections on 2 slots cannot do better')
  t.match(always([3, 3, 1]), { slot: null, reason: /no slot has held/ }, 'nobody above ceil(7 / 3) = 3')
  t.match(always([40, 20]), { slot: null, reason: '30 connections per slot on average, more than shedMaxMean 16: the hash spreads that many well enough' })
  t.match(always([40, 20], { shedMaxMean: 64 }), { slot: 0, count: 10 }, 'unless allowed')
  t.match(always([5, 0], {}, [5, 0]), { slot: 0, count: 2 }, 'long-lived: sheds down to its share')
  const h = rebalanceHistory()
  let accepted = 0
  const d = firstShed(now => rebalanceDecision(slots([5, 1], { accepted: [accepted += 20, 0] }), h, now), 0, 5000)
  t.equal(d, null, 'short-lived: nothing to shed')
  t.match(rebalanceDecision(slots([5, 1], { accepted: [accepted += 20, 0] }), h, 5050), { reason: /short-lived/ })
  t.match(always([4, 0, 9]), { slot: 2, count: 4 }, 'control: with all three eligible, slot 3 sheds')
  const ineligible = rebalanceHistory()
  t.match(run(now => rebalanceDecision(slots([4, 0, 9], { eligible: [true, false, false] }), ineligible, now), 0, 2000),
    { slot: null, reason: 'fewer than 2 slots serve' })
  t.match(always([3, 1], { shedMargin: 2 }), { slot: null }, 'shedMargin 2: 3–1 stays')
})

t.test('rebalance and steering agree: a shed happens only where steering is load-aware', async t => {
  const s = steeringState()
  const h = rebalanceHistory()
  for (let now = 0; now <= 3000; now += 50) {
    const load = slots([9, 7], { accepted: [9, 7] })
    const w = steeringWeights(load, s, now)
    const d = rebalanceDecision(load, h, now)
    if (d.slot !== null) t.ok(w !== null && w[1] > w[0], `at ${now} ms a shed from slot 1 has steering towards slot 2: ${w}`)
  }
  t.ok(h.streak > 0, 'it shed')
})
