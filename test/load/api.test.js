'use strict'

// The programmatic API, in this process: start(), slots(), reload(), scale(), events, close().
const t = require('tap')
const path = require('node:path')
const pino = require('pino')
const { start } = require('../..')
const { FIXTURES, alive, load } = require('../helpers')

t.test('start() returns a handle', async t => {
  const handle = await start({ app: path.join(FIXTURES, 'app.js'), workers: 2, port: 0, host: '127.0.0.1', logger: pino({ level: 'silent' }), closeGraceDelay: 2000, handshakeGrace: 100 })
  t.teardown(() => handle.close())
  t.ok(handle.port > 0, 'port 0 resolves to a real port')
  t.same(handle.addresses, [`127.0.0.1:${handle.port}`])
  const pids = handle.pids()
  t.equal(pids.length, 2)
  const slots = handle.slots()
  t.same(slots.map(s => [s.slot, s.state, s.pid, s.restarts, s.lastExit]), [[0, 'ready', pids[0], 0, null], [1, 'ready', pids[1], 0, null]])
  for (const s of slots) t.type(s.queued, 'number')

  const r = await load({ url: `http://127.0.0.1:${handle.port}`, durationMs: 500, connections: 2, keepAlive: false })
  t.equal(r.failed, 0)

  const events = []
  handle.on('slot', s => events.push(s.state))
  await handle.reload()
  const after = handle.pids()
  t.equal(after.length, 2)
  t.notOk(after.some(p => pids.includes(p)), 'reload replaced both workers')
  t.same(handle.slots().map(s => s.restarts), [1, 1])
  t.ok(events.includes('ready'), 'slot events stream state changes')

  await handle.scale(3)
  t.equal(handle.slots().length, 3)
  await handle.scale(1)
  t.same(handle.slots().map(s => s.slot), [0])
  await t.rejects(handle.scale(0), { code: 'FST_REUSEPORT_INVALID_OPTION' }, 'never zero slots')

  const exit = new Promise(resolve => handle.once('exit', resolve))
  const [pid] = handle.pids()
  process.kill(pid, 'SIGKILL')
  t.match(await exit, { slot: 0, pid, signal: 'SIGKILL' }, 'crash event')
  const states = []
  const onSlot = s => { if (s.slot === 0) states.push(s.state) }
  handle.on('slot', onSlot)
  await new Promise(resolve => handle.once('respawn', resolve))
  handle.off('slot', onSlot)
  t.same(states, ['starting', 'ready'], 'the replacement is reported starting, then ready')
  t.equal(handle.slots()[0].lastExit, 'signal SIGKILL')

  const workers = handle.pids()
  await handle.close()
  for (const p of workers) t.notOk(alive(p), `worker ${p} exited`)
})

t.test('start() validates its options', async t => {
  const app = path.join(FIXTURES, 'app.js')
  await t.rejects(start({ app, workers: 0 }), { code: 'FST_REUSEPORT_INVALID_OPTION', message: /"workers": must be an integer >= 1, received 0/ })
  await t.rejects(start({ app, port: 70000 }), { code: 'FST_REUSEPORT_INVALID_PORT' })
  await t.rejects(start({ app, backlog: -1 }), { code: 'FST_REUSEPORT_INVALID_OPTION' })
  await t.rejects(start({ app: '' }), { code: 'FST_REUSEPORT_INVALID_OPTION', message: /"app"/ })
  await t.rejects(start({ app: 'nope.js', port: 0 }), { code: 'FST_REUSEPORT_APP_NOT_FOUND' })
})
