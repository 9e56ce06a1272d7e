'use strict'

// Fakes of what the supervisor is given (lib/supervisor/supervisor.ts,
// SupervisorDeps): a clock that moves only when told, a spawner whose
// workers do what the test says, and sockets kept in memory. With them the
// supervisor's rules run in-process in milliseconds, as tableflip's and
// gunicorn's arbiter tests do. What only real processes and the kernel can
// prove stays in test/load.
const { EventEmitter } = require('node:events')
const pino = require('pino')
const { Supervisor } = require('../dist/lib/supervisor/supervisor')
const { workerSettings } = require('../dist/lib/supervisor/start')
const { resolveStartOptions } = require('../dist/lib/supervisor/options')

const turn = () => new Promise(resolve => setImmediate(resolve))

async function settle (n = 5) {
  for (let i = 0; i < n; i++) await turn()
}

class FakeClock {
  constructor () {
    this.time = 1_000_000
    this.timers = new Set()
  }

  now () { return this.time }

  setTimeout (fn, ms) {
    const timer = { at: this.time + Math.max(0, ms), fn, unref () { return this } }
    this.timers.add(timer)
    return timer
  }

  clearTimeout (timer) { if (timer) this.timers.delete(timer) }

  /** Moves time forward by ms, running each timer due on the way, in order, with its promises settled. */
  async advance (ms) {
    const end = this.time + ms
    await settle()
    for (;;) {
      let next = null
      for (const t of this.timers) if (t.at <= end && (next === null || t.at < next.at)) next = t
      if (next === null) break
      this.timers.delete(next)
      this.time = Math.max(this.time, next.at)
      next.fn()
      await settle()
    }
    this.time = end
    await settle()
  }
}

let nextPid = 1000

/** A worker process that does what its script says: boot and become ready, fail, or hang at boot. */
class FakeProc {
  constructor (spec, script) {
    this.pid = nextPid++
    this.spec = spec
    this.child = null
    this.sent = []
    this.signals = []
    const channel = new EventEmitter()
    channel.open = true
    channel.send = async m => { this.sent.push(m) }
    this.channel = channel
    this.exited = new Promise(resolve => { this.resolveExit = resolve })
    this.gone = false
    if (script === 'ready') setImmediate(() => this.say({ type: 'ready', addresses: ['127.0.0.1:3000'] }))
    else if (script === 'fail') setImmediate(() => this.exit(1, null))
  }

  say (message) { if (!this.gone) this.channel.emit('message', message) }

  health (fields = {}) {
    this.say({ type: 'health', delayMs: 0, accepted: 0, open: 0, rss: 1e7, requests: 0, nextMs: 50, ...fields })
  }

  kill (signal) {
    this.signals.push(signal)
    if (signal === 'SIGKILL') this.exit(null, 'SIGKILL')
  }

  exit (code, signal) {
    if (this.gone) return
    this.gone = true
    this.channel.open = false
    this.resolveExit({ code, signal, error: null })
  }

  /** The drain the worker was told to do, done. */
  drained () { return this.sent.some(m => m.type === 'drain') }
}

function fakeSpawner () {
  const spawned = []
  const scripts = []
  const spawner = spec => {
    const proc = new FakeProc(spec, scripts.shift() ?? 'ready')
    spawned.push(proc)
    return proc
  }
  return { spawner, spawned, scripts }
}

function fakeSockets () {
  const steered = []
  const handoffs = []
  const closed = []
  const queues = new Map()
  // The watches an idle supervisor arms: enqueue() fires the ones on that fd, as the kernel would.
  const watches = []
  return {
    balancer: 'reuseport',
    port: 3000,
    addresses: ['127.0.0.1:3000'],
    steering: true,
    open: index => [{ fd: 100 + index, address: '127.0.0.1', family: 4, port: 3000, backlog: 511 }],
    close: listeners => { closed.push(...listeners.map(l => l.fd)) },
    queued: listeners => listeners.reduce((n, l) => n + (queues.get(l.fd) ?? 0), 0),
    watch: (listeners, onQueued) => {
      const w = { fds: listeners.map(l => l.fd), onQueued, armed: true }
      watches.push(w)
      return () => { w.armed = false }
    },
    /** A connection queues on fd: the armed watches on it fire once. */
    enqueue (fd, n = 1) {
      queues.set(fd, (queues.get(fd) ?? 0) + n)
      for (const w of watches) if (w.armed && w.fds.includes(fd)) { w.armed = false; w.onQueued() }
    },
    armed: () => watches.filter(w => w.armed),
    steer: loads => { steered.push(loads.map(l => l.eligible)) },
    rebalance: () => ({ slot: null, count: 0, reason: 'fake' }),
    handoff: (listeners, target) => {
      const h = { fd: listeners[0].fd, count: 0, open: true, target, close () { this.open = false } }
      handoffs.push(h)
      return h
    },
    reap: () => {},
    adopt: () => {},
    steered,
    handoffs,
    closed,
    queues
  }
}

/** A supervisor on fakes; lines holds what it logged. */
function fakeSupervisor (options = {}) {
  const clock = new FakeClock()
  const { spawner, spawned, scripts } = fakeSpawner()
  const sockets = fakeSockets()
  const lines = []
  const log = pino({ level: 'info' }, { write: line => lines.push(JSON.parse(line)) })
  const settings = workerSettings(resolveStartOptions({ app: __filename, ...options }), null)
  const supervisor = new Supervisor({ settings, log, clock, sockets, spawner })
  return { supervisor, clock, spawned, scripts, sockets, lines, settings }
}

module.exports = { FakeClock, fakeSupervisor, settle }
