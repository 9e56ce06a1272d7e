'use strict'

// The supervisor's rules, in-process: the spawner, the sockets and the clock
// are fakes (test/supervisor-fakes.js), so respawn, backoff, crash loops,
// hand-off, retirement, hangs and the operation queue are checked in
// milliseconds. test/load proves the same with real processes.
const t = require('tap')
const { fakeSupervisor, settle } = require('../supervisor-fakes')

async function opened (options, n = 2) {
  const f = fakeSupervisor(options)
  await f.supervisor.open(n)
  t.teardown(() => f.supervisor.removeAllListeners())
  return f
}

async function closed (f) {
  const done = f.supervisor.close()
  for (const p of f.spawned) if (!p.gone) p.exit(0, null)
  await done
}

t.test('open: one worker per slot, each given its own slot fds', async t => {
  const f = await opened({}, 2)
  t.same(f.supervisor.pids(), f.spawned.map(p => p.pid))
  t.same(f.spawned.map(p => p.spec.listeners.map(l => l.fd)), [[100], [101]])
  t.same(f.supervisor.slots().map(s => s.state), ['ready', 'ready'])
  const snap = f.supervisor.snapshot()
  t.same(snap.slots.map(s => [s.index, s.fds, s.worker]), [[0, [100], f.spawned[0].pid], [1, [101], f.spawned[1].pid]], 'the state is one plain value')
  t.same(JSON.parse(JSON.stringify(snap)), snap, 'and survives JSON')
  await closed(f)
})

t.test('a worker that served is respawned at once; its queue is handed over meanwhile, then taken back', async t => {
  const f = await opened({}, 2)
  const [first] = f.spawned
  await f.clock.advance(6000) // settled
  f.spawned[1].health()
  f.scripts.push('hang') // the replacement boots slowly
  first.exit(1, null)
  await f.clock.advance(0)
  t.equal(f.spawned.length, 3, 'respawned at once')
  t.equal(f.supervisor.slots()[0].state, 'starting')
  t.equal(f.sockets.handoffs.length, 0, 'no hand-off before the other deaths could be seen')
  await f.clock.advance(2 * f.settings.config.healthMs)
  t.equal(f.sockets.handoffs.length, 1, 'then its queue is handed over')
  t.equal(f.sockets.handoffs[0].fd, 100)
  f.spawned[2].say({ type: 'ready', addresses: [] })
  await settle()
  t.notOk(f.sockets.handoffs[0].open, 'and taken back once the replacement is ready')
  t.equal(f.supervisor.slots()[0].state, 'ready')
  t.same(f.supervisor.slots()[0].lastExit, 'code 1')
  await closed(f)
})

t.test('no hand-off when no other worker serves', async t => {
  const f = await opened({}, 1)
  f.scripts.push('hang')
  f.spawned[0].exit(1, null)
  await f.clock.advance(1000)
  t.equal(f.sockets.handoffs.length, 0)
  await closed(f)
})

t.test('workers that die at boot are retried with a doubling backoff', async t => {
  const f = await opened({ crashLoopTimeout: 0 }, 1)
  f.scripts.push('fail', 'fail', 'fail', 'fail')
  f.spawned[0].exit(1, null) // never served: a failure
  await settle(10)
  const spawnsAt = []
  let seen = f.spawned.length
  for (let ms = 0; ms < 2000; ms += 10) {
    await f.clock.advance(10)
    if (f.spawned.length > seen) {
      spawnsAt.push(ms + 10)
      seen = f.spawned.length
    }
  }
  const gaps = spawnsAt.slice(1).map((at, i) => at - spawnsAt[i])
  t.same(gaps, [200, 400, 800], `respawns at ${spawnsAt.join(', ')} ms: the delay doubles`)
  await closed(f)
})

t.test('every slot failing: the crash-loop rule ends the supervisor', async t => {
  const f = await opened({ crashLoopTimeout: 3000 }, 2)
  let fatal = null
  f.supervisor.on('fatal', err => { fatal = err })
  for (let i = 0; i < 50; i++) f.scripts.push('fail')
  for (const p of f.spawned.slice(0, 2)) p.exit(1, null)
  await f.clock.advance(2500)
  t.equal(fatal, null, 'not before the timeout')
  await f.clock.advance(1000)
  t.equal(fatal?.code, 'FST_REUSEPORT_CRASH_LOOP')
  t.ok(f.lines.some(l => l.level === 60 && /No worker has served for 3000 ms/.test(l.msg)), 'one fatal line')
  await closed(f)
})

t.test('a worker silent past --worker-timeout is killed and replaced, its queue handed over at once', async t => {
  const f = await opened({ workerTimeout: 2000, stallTimeout: 0 }, 2)
  const replaced = []
  f.supervisor.on('replace', e => replaced.push(e))
  for (let ms = 0; ms < 2500; ms += 100) {
    f.spawned[1].health()
    await f.clock.advance(100)
  }
  t.same(f.spawned[0].signals, ['SIGKILL'], 'the hung worker is killed')
  t.match(replaced, [{ slot: 0, reason: 'hung' }])
  t.equal(f.sockets.handoffs.length, 1, 'its queue goes to the live worker at once')
  t.equal(f.spawned.length, 3, 'and its replacement starts')
  await settle()
  t.equal(f.supervisor.slots()[0].replacements.hung, 1)
  await closed(f)
})

t.test('a stalled worker is steered out, and back in once it reports again', async t => {
  const f = await opened({ stallTimeout: 500 }, 2)
  f.sockets.queues.set(100, 1)
  for (let ms = 0; ms < 200; ms += 20) {
    f.spawned[1].health()
    f.sockets.queues.set(100, 1 + ms) // slot 1's queue grows, its worker is silent
    await f.clock.advance(20)
  }
  t.equal(f.supervisor.slots()[0].state, 'stalled')
  t.same(f.sockets.steered.at(-1), [false, true], 'steered out')
  f.sockets.queues.set(100, 0)
  for (let i = 0; i < 5; i++) {
    for (const p of f.spawned) p.health()
    await f.clock.advance(20)
  }
  t.equal(f.supervisor.slots()[0].state, 'ready')
  t.same(f.sockets.steered.at(-1), [true, true], 'back in rotation')
  await closed(f)
})

t.test('an idle fleet ticks slowly, watches its sockets, and a queued connection wakes it', async t => {
  const f = await opened({ stallTimeout: 500 }, 2)
  await f.clock.advance(6000)
  const idle = () => { for (const p of f.spawned) p.health({ nextMs: 5000 }) }
  idle()
  await f.clock.advance(20)
  t.equal(f.sockets.armed().length, 1, 'one watch, armed once every slot idles')
  t.same(f.sockets.armed()[0].fds, [100, 101], 'on every slot\'s sockets')
  const ticks = f.sockets.steered.length
  await f.clock.advance(2000)
  t.equal(f.sockets.steered.length - ticks, 4, 'a tick every 500 ms while idle')
  // Slot 0's worker stalled while idle: it will not report the connection.
  f.sockets.enqueue(100)
  t.equal(f.sockets.armed().length, 0, 'the watch is gone once it fired')
  for (let ms = 0; ms < 200; ms += 20) {
    f.spawned[1].health({ nextMs: 5000 })
    await f.clock.advance(20)
  }
  t.equal(f.supervisor.slots()[0].state, 'stalled', 'steered out within 200 ms of the connection, not at a slow tick')
  t.same(f.sockets.steered.at(-1), [false, true])
  f.sockets.queues.set(100, 0)
  for (let i = 0; i < 5; i++) {
    for (const p of f.spawned) p.health({ nextMs: 5000 })
    await f.clock.advance(20)
  }
  t.equal(f.supervisor.slots()[0].state, 'ready', 'back once it reports')
  await f.clock.advance(20)
  t.equal(f.sockets.armed().length, 1, 'and the idle fleet watches again')
  f.spawned[0].health({ nextMs: 50 })
  await f.clock.advance(0)
  t.equal(f.sockets.armed().length, 0, 'a busy worker disarms it')
  idle()
  await f.clock.advance(20)
  await closed(f)
  t.equal(f.sockets.armed().length, 0, 'and so does shutdown')
})

t.test('an idle fleet still replaces a worker silent past --worker-timeout within the timeout + 1 s', async t => {
  const workerTimeout = 8000
  // No stall steering: a silent worker is not stalled first, so nothing but the idle tick sees it.
  const f = await opened({ workerTimeout, stallTimeout: 0 }, 2)
  const beat = f.settings.config.heartbeatMs
  t.equal(beat, 2000, 'the idle heartbeat is a quarter of --worker-timeout')
  await f.clock.advance(6000)
  const replaced = []
  f.supervisor.on('replace', e => replaced.push({ ...e, at: f.clock.now() }))
  for (const p of f.spawned) p.health({ nextMs: beat })
  const silentFrom = f.clock.now() // slot 0's worker sends nothing from here on
  for (let ms = 0; ms < workerTimeout + 1000; ms += beat / 4) {
    if (ms % beat === 0) f.spawned[1].health({ nextMs: beat })
    await f.clock.advance(beat / 4)
  }
  t.match(replaced, [{ slot: 0, reason: 'hung' }], 'replaced as hung')
  t.ok(replaced[0].at - silentFrom <= workerTimeout + 1000, `after ${replaced[0].at - silentFrom} ms of silence`)
  await closed(f)
})

t.test('operations run one at a time, in order', async t => {
  const f = await opened({}, 2)
  f.scripts.push('hang')
  const order = []
  const reload = f.supervisor.reload().then(() => order.push('reload'))
  const scale = f.supervisor.scale(3).then(() => order.push('scale'))
  await settle()
  t.equal(f.spawned.length, 3, 'the reload starts its first worker; the scale waits')
  f.spawned[2].say({ type: 'ready', addresses: [] })
  await settle(10)
  t.ok(f.spawned[0].drained(), 'the old worker of slot 1 drains once the new one is ready')
  f.spawned[0].exit(0, null)
  await settle(10)
  t.equal(f.spawned.length, 5, 'then slot 2, then the new slot 3')
  await Promise.all([reload, scale])
  t.same(order, ['reload', 'scale'])
  t.equal(f.supervisor.slots().length, 3)
  await closed(f)
})

t.test('retiring a slot steers it out, drains its worker, then closes its sockets', async t => {
  const f = await opened({ handshakeGrace: 100 }, 2)
  const scaled = f.supervisor.scale(1)
  await settle()
  t.same(f.sockets.steered.at(-1), [true, false], 'steered out first')
  t.notOk(f.spawned[1].drained(), 'its worker serves what is queued meanwhile')
  await f.clock.advance(120)
  t.ok(f.spawned[1].drained(), 'then drains')
  t.same(f.sockets.closed, [], 'the socket stays open while the worker drains')
  f.spawned[1].exit(0, null)
  await scaled
  t.same(f.sockets.closed, [101], 'then it closes')
  t.equal(f.supervisor.slots().length, 1)
  await t.rejects(f.supervisor.scale(0), { code: 'FST_REUSEPORT_INVALID_OPTION' })
  await closed(f)
})

t.test('shutdown: starting workers are killed, ready ones drained, sockets closed after every exit', async t => {
  const f = await opened({}, 2)
  f.scripts.push('hang')
  f.spawned[0].exit(1, null) // ready, but never served: respawned after 100 ms
  await f.clock.advance(100)
  const starting = f.spawned[2]
  const done = f.supervisor.close()
  await settle()
  t.equal(starting.signals[0], 'SIGKILL', 'the starting worker is killed')
  t.ok(f.spawned[1].drained())
  t.same(f.sockets.closed, [], 'nothing closed while a worker runs')
  f.spawned[1].exit(0, null)
  await done
  t.same(f.sockets.closed, [100, 101])
})
