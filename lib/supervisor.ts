import { spawn, type ChildProcess } from 'node:child_process'
import { EventEmitter } from 'node:events'
import fs from 'node:fs'
import type http from 'node:http'
import path from 'node:path'
import pino, { type Logger } from 'pino'
import { availableCpus } from './cpus'
import { FST_REUSEPORT_APP_NOT_FOUND, FST_REUSEPORT_INVALID_OPTION, FST_REUSEPORT_READY_TIMEOUT, FST_REUSEPORT_UNSUPPORTED, FST_REUSEPORT_WORKER_FAILED, reviveError } from './errors'
import { LISTENERS_ENV, closeListeners, openListeners, parsePort, resolveHost, type Listener } from './listener'
import { isFatalMessage, isWorkerMessage, WORKER_ENV, type SupervisorMessage, type WorkerConfig } from './messages'
import { serveMetrics } from './metrics'
import { loadNative, type NativeBinding } from './native'
import { received, validateBacklog } from './options'
import { steerProgram } from './steering'

export interface StartOptions {
  /** Path of the app file: a Fastify plugin, CommonJS or ESM. */
  app: string
  /** Worker count, or 'auto' (default): the CPUs this process may use. */
  workers?: number | 'auto'
  port?: number | string
  /** Default 'localhost' (every loopback address), as fastify. */
  host?: string
  backlog?: number
  ipv6Only?: boolean
  logLevel?: string
  prettyLogs?: boolean
  /** fastify-cli's -o: use the app's exported `options`. */
  options?: boolean
  prefix?: string
  pluginTimeout?: number
  bodyLimit?: number
  /** Node options for every worker, before the worker script: ['--require', './tracing.js'], ['--import', 'x']. */
  preload?: string[]
  /** How long a draining worker may take before it is killed, ms. Default 10000. */
  closeGraceDelay?: number
  /** How long a new worker may take to become ready, ms. Default 30000. */
  readyTimeout?: number
  /** When retiring a slot, how long to wait for handshakes in flight on it after its accept queue is empty, ms. Default 2000. */
  handshakeGrace?: number
  /** A slot whose worker's event loop is this late (or silent this long) is steered out, ms. 0 disables. Default 500. */
  stallTimeout?: number
  /** A slot whose accept queue holds this many connections while its worker accepts none is steered out. Default 32. */
  stallQueue?: number
  /** Serve Prometheus metrics on this port (GET /metrics), on `host`. Off by default. */
  metricsPort?: number
  /** A pino logger for the supervisor's own lines; one is made from logLevel otherwise. */
  logger?: Logger
}

export type SlotState = 'starting' | 'ready' | 'draining' | 'stalled' | 'dead'

export interface SlotInfo {
  slot: number
  state: SlotState
  pid: number | null
  /** Connections accepted by this slot's workers, all of them. */
  accepted: number
  /** Connections waiting in the slot's accept queue now. */
  queued: number
  /** Worst event-loop delay its worker reported in its last interval, ms. */
  loopDelayMs: number
  restarts: number
  stalls: number
  /** How the slot's last worker exited unexpectedly ("code 1", "signal SIGKILL"). */
  lastExit: string | null
}

/** The events a SupervisorHandle emits. */
export interface SupervisorEvents {
  /** Any slot state change. */
  slot: [info: SlotInfo]
  /** A worker exited unexpectedly; a replacement is on its way. */
  exit: [event: { slot: number, pid: number, code: number | null, signal: NodeJS.Signals | null }]
  respawn: [event: { slot: number, pid: number }]
  stall: [event: { slot: number, pid: number, reason: string }]
  recover: [event: { slot: number, pid: number }]
  /** The slot count after a scale change. */
  scale: [slots: number]
  reloaded: []
  close: []
}

export interface SupervisorHandle extends EventEmitter {
  on<E extends keyof SupervisorEvents> (event: E, listener: (...args: SupervisorEvents[E]) => void): this
  once<E extends keyof SupervisorEvents> (event: E, listener: (...args: SupervisorEvents[E]) => void): this
  readonly port: number
  readonly addresses: string[]
  /** The metrics server's address, when metricsPort was given. */
  readonly metricsPort: number | null
  /** Pids of the workers that serve, in slot order. */
  pids (): number[]
  slots (): SlotInfo[]
  /** Rolling restart, slot by slot, re-reading the app from disk. Rejects, keeping the old workers, when a new one fails. */
  reload (): Promise<void>
  /** Adds or retires slots until there are n. Retiring steers a slot out, serves what is queued on it, then closes it. */
  scale (n: number): Promise<void>
  /** Drains every worker, closes the slots. */
  close (options?: { drainDelay?: number }): Promise<void>
}

interface Worker {
  child: ChildProcess
  pid: number
  slot: number
  state: 'starting' | 'ready' | 'draining' | 'exited'
  startedAt: number
  /** Last health report: when, loop delay, connections accepted. */
  healthAt: number
  delayMs: number
  accepted: number
  exited: Promise<void>
  /** The error the worker reported before it exited. */
  error?: Error
}

interface Slot {
  index: number
  listeners: Listener[]
  worker: Worker | null
  restarts: number
  failures: number
  lastExit: string | null
  respawnTimer: NodeJS.Timeout | null
  /** Connections accepted by this slot's earlier workers. */
  acceptedBefore: number
  retiring: boolean
  stalled: boolean
  stalls: number
  /** Since when the accept queue has held stallQueue or more, and the worker's accepted count then. */
  queueFull: { since: number, accepted: number } | null
  /** The accept queue at the previous sample. */
  lastQueued: number
}

interface Settings {
  config: Omit<WorkerConfig, 'slot'>
  preload: string[]
  readyTimeout: number
  handshakeGrace: number
  stallTimeout: number
  stallQueue: number
  port: number
  backlog: number
  ipv6Only: boolean
}

const WORKER_SCRIPT = path.join(__dirname, 'worker.js')
// A stuck worker gets its share of new connections until it is steered out:
// detection time is what this feature sells. 50 samples/s of TCP_INFO per
// slot and 20 health reports/s per worker cost well under 1% of a core.
const SAMPLE_MS = 20
const HEALTH_MS = 50

function integer (name: string, value: unknown, min = 0): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new FST_REUSEPORT_INVALID_OPTION(name, `must be an integer >= ${min}`, received(value))
  }
  return value
}

function describeExit (code: number | null, signal: NodeJS.Signals | null): string {
  return signal !== null ? `signal ${signal}` : `code ${code}`
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** The supervisor's logger: pino, JSON lines, or pino-pretty with -P. */
export function makeLogger (level: string, pretty: boolean): Logger {
  return pino({
    level,
    base: { pid: process.pid, role: 'supervisor' },
    ...(pretty ? { transport: { target: 'pino-pretty' } } : {})
  })
}

/** Runs an app on N workers, each serving its own SO_REUSEPORT socket owned here. */
export async function start (options: StartOptions): Promise<SupervisorHandle> {
  if (typeof options !== 'object' || options === null) throw new FST_REUSEPORT_INVALID_OPTION('options', 'must be an object', received(options))
  if (typeof options.app !== 'string' || options.app === '') throw new FST_REUSEPORT_INVALID_OPTION('app', 'must be the path of an app file', received(options.app))
  const workers = options.workers === undefined || options.workers === 'auto' ? availableCpus() : integer('workers', options.workers, 1)
  const host = options.host ?? 'localhost'
  if (typeof host !== 'string') throw new FST_REUSEPORT_INVALID_OPTION('host', 'must be a string', received(host))
  const graceMs = integer('closeGraceDelay', options.closeGraceDelay ?? 10000)
  const stallTimeout = integer('stallTimeout', options.stallTimeout ?? 500)
  const settings: Settings = {
    port: parsePort(options.port ?? 3000),
    backlog: options.backlog === undefined ? 511 : validateBacklog(options.backlog),
    ipv6Only: options.ipv6Only === true,
    readyTimeout: integer('readyTimeout', options.readyTimeout ?? 30000, 1),
    handshakeGrace: integer('handshakeGrace', options.handshakeGrace ?? 2000),
    preload: options.preload ?? [],
    stallTimeout,
    stallQueue: integer('stallQueue', options.stallQueue ?? 32, 1),
    config: {
      app: path.resolve(options.app),
      logLevel: options.logLevel ?? 'info',
      prettyLogs: options.prettyLogs === true,
      useOptions: options.options === true,
      prefix: options.prefix,
      pluginTimeout: options.pluginTimeout ?? 10000,
      bodyLimit: options.bodyLimit,
      idleMs: Math.min(1000, Math.max(50, Math.floor(graceMs / 4))),
      graceMs,
      healthMs: stallTimeout > 0 ? Math.min(HEALTH_MS, Math.max(10, Math.floor(stallTimeout / 4))) : 250
    }
  }
  if (options.preload !== undefined && (!Array.isArray(options.preload) || !options.preload.every(a => typeof a === 'string'))) {
    throw new FST_REUSEPORT_INVALID_OPTION('preload', 'must be an array of strings', received(options.preload))
  }
  const metricsPort = options.metricsPort === undefined ? undefined : parsePort(options.metricsPort)
  const log = options.logger ?? makeLogger(options.logLevel ?? 'info', options.prettyLogs === true)
  if (!fs.existsSync(settings.config.app)) throw new FST_REUSEPORT_APP_NOT_FOUND(settings.config.app)

  const { binding, reason } = loadNative()
  if (binding === null) throw new FST_REUSEPORT_UNSUPPORTED(reason)

  const supervisor = new Supervisor(binding, log, settings)
  try {
    await supervisor.open(await resolveHost(host), workers)
    if (metricsPort !== undefined) await supervisor.serveMetrics(metricsPort, host)
  } catch (err) {
    await supervisor.close()
    throw err
  }
  supervisor.logStarted()
  return supervisor
}

class Supervisor extends EventEmitter implements SupervisorHandle {
  port = 0
  addresses: string[] = []
  metricsPort: number | null = null
  private readonly slotList: Slot[] = []
  /** The addresses every slot binds: those slot 0 could bind. */
  private template: Array<{ address: string, family: 4 | 6 }> = []
  private closing = false
  /** Reloads and scale changes run one at a time, in order. */
  private queue: Promise<unknown> = Promise.resolve()
  private steering = false
  private sampler: NodeJS.Timeout | null = null
  private reaper: NodeJS.Timeout | null = null
  /** Every worker process not yet exited, including new ones not yet ready. */
  private readonly live = new Set<Worker>()
  private metrics: http.Server | null = null
  /** A failed start prints nothing on stdout: no shutdown lines for workers that never served. */
  private started = false

  constructor (
    private readonly binding: NativeBinding,
    private readonly log: Logger,
    private readonly settings: Settings
  ) {
    super()
    // Nobody must outlive us, even on process.exit() from a second signal.
    process.once('exit', this.killAll)
  }

  private readonly killAll = (): void => { for (const w of this.live) w.child.kill('SIGKILL') }

  /** Opens the slots in slot order (socket i of each reuseport group is slot i) and starts their workers. */
  async open (addresses: Array<{ address: string, family: 4 | 6 }>, n: number): Promise<void> {
    this.template = addresses
    for (let i = 0; i < n; i++) this.addSlot()
    this.steering = this.probeSteering()
    await Promise.all(this.slotList.map(s => this.spawnReady(s)))
    if (this.settings.stallTimeout > 0) {
      this.sampler = setInterval(() => this.sample(), SAMPLE_MS)
      this.sampler.unref()
    }
    if (process.pid === 1) {
      this.reaper = setInterval(() => this.reap(), 1000)
      this.reaper.unref()
    }
  }

  /** As PID 1 (a container's entrypoint), orphaned processes are ours to reap. */
  private reap (): void {
    try {
      this.binding.reapOrphans([...this.live].map(w => w.pid))
    } catch (err) {
      this.log.warn({ err }, 'could not reap orphaned processes')
    }
  }

  private addSlot (): Slot {
    const { port, backlog, ipv6Only } = this.settings
    const listeners = openListeners(this.binding, this.template, { port: this.port || port, backlog, ipv6Only })
    if (this.slotList.length === 0) {
      this.template = listeners.map(({ address, family }) => ({ address, family }))
      this.port = listeners[0]?.port ?? port
      this.addresses = listeners.map(l => (l.family === 6 ? `[${l.address}]` : l.address) + ':' + l.port)
    }
    const slot: Slot = {
      index: this.slotList.length, listeners, worker: null, restarts: 0, failures: 0, lastExit: null, respawnTimer: null,
      acceptedBefore: 0, retiring: false, stalled: false, stalls: 0, queueFull: null, lastQueued: 0
    }
    this.slotList.push(slot)
    return slot
  }

  async serveMetrics (port: number, host: string): Promise<void> {
    this.metrics = await serveMetrics(port, host, () => this.slots())
    const address = this.metrics.address()
    this.metricsPort = typeof address === 'object' && address !== null ? address.port : port
  }

  pids (): number[] {
    return this.slotList.flatMap(s => s.worker?.state === 'ready' ? [s.worker.pid] : [])
  }

  slots (): SlotInfo[] {
    return this.slotList.map(s => ({
      slot: s.index,
      state: this.slotState(s),
      pid: s.worker?.pid ?? null,
      accepted: s.acceptedBefore + (s.worker?.accepted ?? 0),
      queued: this.queued(s),
      loopDelayMs: s.worker?.delayMs ?? 0,
      restarts: s.restarts,
      stalls: s.stalls,
      lastExit: s.lastExit
    }))
  }

  private slotState (s: Slot): SlotState {
    const state = s.worker?.state
    if (state === undefined || state === 'exited') {
      // slot.worker is the one that serves; a replacement on its way is only in `live`.
      return [...this.live].some(w => w.slot === s.index && w.state === 'starting') ? 'starting' : 'dead'
    }
    if (s.retiring) return 'draining'
    if (state === 'ready' && s.stalled) return 'stalled'
    return state
  }

  private queued (s: Slot): number {
    let n = 0
    for (const l of s.listeners) {
      try { n += this.binding.queueInfo(l.fd).queued } catch { /* closed while retiring or shutting down */ }
    }
    return n
  }

  private line (s: Slot): string {
    return `slot ${s.index + 1} of ${this.slotList.length}`
  }

  logStarted (): void {
    this.started = true
    for (const s of this.slotList) {
      this.log.info({ slot: s.index, workerPid: s.worker?.pid, addresses: this.addresses }, `${this.line(s)}: worker ${s.worker?.pid} serving ${this.addresses.join(', ')}`)
    }
    const migrate = readMigrateReq()
    this.log.info({ handoff: true, tcpMigrateReq: migrate, steering: this.steering },
      `safety nets: socket handoff on; net.ipv4.tcp_migrate_req ${migrate === null ? 'unavailable (Linux < 5.14)' : migrate ? 'on' : 'off'}; classic BPF steering ${this.steering ? 'attached on demand' : 'unavailable'}`)
    if (this.metricsPort !== null) this.log.info(`metrics: http://${this.addresses[0]?.replace(/:\d+$/, '')}:${this.metricsPort}/metrics`)
  }

  /** Starts a worker on the slot's fds and resolves once it serves; it is then the slot's worker. */
  private async spawnReady (slot: Slot): Promise<Worker> {
    const worker = this.spawn(slot)
    try {
      await this.waitReady(slot, worker)
    } catch (err) {
      worker.child.kill('SIGKILL')
      await worker.exited
      throw err
    }
    const previous = slot.worker
    if (previous) slot.acceptedBefore += previous.accepted
    slot.worker = worker
    slot.stalled = false
    slot.queueFull = null
    worker.state = 'ready'
    worker.healthAt = Date.now()
    this.updateSteering()
    this.emit('slot', this.slots()[slot.index])
    if (previous && previous.state !== 'exited') this.drainWorker(previous)
    return worker
  }

  private spawn (slot: Slot): Worker {
    const fds = slot.listeners.map(l => l.fd)
    // stdio index = fd number in the child: 3 is IPC, the listeners follow.
    const inherited = slot.listeners.map((l, i) => ({ ...l, fd: 4 + i }))
    const child = spawn(process.execPath, [...process.execArgv, ...this.settings.preload, WORKER_SCRIPT], {
      stdio: ['inherit', 'inherit', 'inherit', 'ipc', ...fds],
      env: {
        ...process.env,
        [LISTENERS_ENV]: JSON.stringify(inherited),
        [WORKER_ENV]: JSON.stringify({ ...this.settings.config, slot: slot.index } satisfies WorkerConfig)
      }
    })
    const worker: Worker = {
      child,
      pid: child.pid ?? -1,
      slot: slot.index,
      state: 'starting',
      startedAt: Date.now(),
      healthAt: Date.now(),
      delayMs: 0,
      accepted: 0,
      exited: new Promise(resolve => child.once('exit', () => resolve()))
    }
    this.live.add(worker)
    void worker.exited.then(() => this.live.delete(worker))
    child.on('message', (m: unknown) => {
      if (isWorkerMessage(m) && m.type === 'health') {
        worker.healthAt = Date.now()
        worker.delayMs = m.delayMs
        worker.accepted = m.accepted
      } else if (isFatalMessage(m)) {
        worker.error = reviveError(m.error)
      }
    })
    child.once('exit', (code, signal) => this.onExit(slot, worker, code, signal))
    return worker
  }

  private waitReady (slot: Slot, worker: Worker): Promise<void> {
    const { readyTimeout } = this.settings
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(new FST_REUSEPORT_READY_TIMEOUT(slot.index, readyTimeout)), readyTimeout)
      const onMessage = (m: unknown): void => {
        if (!isWorkerMessage(m) || m.type === 'health') return
        if (m.type === 'ready') finish(null)
        else finish(new FST_REUSEPORT_WORKER_FAILED(slot.index, `${m.message} (${m.code})`, ...(worker.error ? [{ cause: worker.error }] : [])))
      }
      const onExit = (code: number | null, signal: NodeJS.Signals | null): void =>
        finish(new FST_REUSEPORT_WORKER_FAILED(slot.index, `exited with ${describeExit(code, signal)} before it was ready`))
      const finish = (err: Error | null): void => {
        clearTimeout(timer)
        worker.child.off('message', onMessage)
        worker.child.off('exit', onExit)
        if (err) reject(err)
        else resolve()
      }
      worker.child.on('message', onMessage)
      worker.child.once('exit', onExit)
    })
  }

  private drainWorker (worker: Worker): void {
    worker.state = 'draining'
    const message: SupervisorMessage = { type: 'drain' }
    if (worker.child.connected) worker.child.send(message)
    // The worker gives up on its own at graceMs; this is for one that cannot.
    const kill = setTimeout(() => worker.child.kill('SIGKILL'), this.settings.config.graceMs + 1000)
    void worker.exited.then(() => clearTimeout(kill))
  }

  private onExit (slot: Slot, worker: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    const wasServing = worker.state === 'ready' && slot.worker === worker
    const wasDraining = worker.state === 'draining'
    worker.state = 'exited'
    const err = worker.error
    if (wasDraining && (err !== undefined || code !== 0)) {
      this.log.error({ slot: slot.index, workerPid: worker.pid, code, signal, err }, `${this.line(slot)}: draining worker ${worker.pid} exited with ${describeExit(code, signal)}${err ? `: ${err.message}` : ''}`)
    }
    if (!wasServing) return
    slot.lastExit = describeExit(code, signal)
    slot.stalled = false
    this.updateSteering()
    this.emit('slot', this.slots()[slot.index])
    if (this.closing || slot.retiring) return
    // Its socket lives on here: connections queued on it wait for the replacement.
    slot.failures = Date.now() - worker.startedAt > 10000 ? 0 : slot.failures + 1
    const delay = Math.min(10000, 100 * 2 ** Math.max(0, slot.failures - 1))
    this.log.error({ slot: slot.index, workerPid: worker.pid, code, signal, err }, `${this.line(slot)}: worker ${worker.pid} exited with ${slot.lastExit}${err ? `: ${err.message}` : ''}; respawning in ${delay} ms`)
    this.emit('exit', { slot: slot.index, pid: worker.pid, code, signal })
    slot.respawnTimer = setTimeout(() => { slot.respawnTimer = null; this.respawn(slot) }, delay)
  }

  private respawn (slot: Slot): void {
    if (this.closing || slot.retiring) return
    slot.restarts++
    const ready = this.spawnReady(slot)
    this.emit('slot', this.slots()[slot.index])
    ready.then(w => {
      this.log.info({ slot: slot.index, workerPid: w.pid }, `${this.line(slot)}: worker ${w.pid} ready`)
      this.emit('respawn', { slot: slot.index, pid: w.pid })
    }, (err: Error) => {
      if (this.closing || slot.retiring) return
      slot.failures++
      const delay = Math.min(10000, 100 * 2 ** slot.failures)
      this.log.error({ slot: slot.index, err }, `${this.line(slot)}: ${err.message}; retrying in ${delay} ms`)
      slot.respawnTimer = setTimeout(() => { slot.respawnTimer = null; this.respawn(slot) }, delay)
    })
  }

  private enqueue<T> (op: () => Promise<T>): Promise<T> {
    const run = this.queue.catch(() => {}).then(op)
    this.queue = run
    return run
  }

  reload (): Promise<void> {
    return this.enqueue(() => this.rollingRestart())
  }

  private async rollingRestart (): Promise<void> {
    for (const slot of this.slotList) {
      if (this.closing) return
      if (slot.worker?.state !== 'ready' || slot.retiring) continue // a dead slot is respawned with the new code anyway
      const old = slot.worker
      try {
        const next = await this.spawnReady(slot)
        slot.restarts++
        this.log.info({ slot: slot.index, workerPid: next.pid, oldPid: old.pid }, `reload: ${this.line(slot)}: worker ${next.pid} ready, draining ${old.pid}`)
      } catch (err) {
        this.log.error({ slot: slot.index, err }, `reload: ${this.line(slot)}: ${(err as Error).message}; keeping worker ${old.pid}, reload stopped`)
        throw err
      }
    }
    this.log.info(`reload: all ${this.slotList.length} slots replaced`)
    this.emit('reloaded')
  }

  scale (n: number): Promise<void> {
    return this.enqueue(async () => {
      integer('workers', n, 1)
      while (!this.closing && this.slotList.length < n) await this.scaleUp()
      while (!this.closing && this.slotList.length > n) await this.retireLast()
    })
  }

  private async scaleUp (): Promise<void> {
    const slot = this.addSlot()
    // Out of rotation until its worker is ready.
    this.updateSteering()
    try {
      const w = await this.spawnReady(slot)
      this.log.info({ slot: slot.index, workerPid: w.pid }, `scale: ${this.line(slot)} added, worker ${w.pid}`)
      this.emit('scale', this.slotList.length)
    } catch (err) {
      this.slotList.pop()
      closeListeners(this.binding, slot.listeners)
      this.updateSteering()
      this.log.error({ err }, `scale: could not add a slot: ${(err as Error).message}`)
      throw err
    }
  }

  /**
   * Retires the last slot: only the last, because closing a socket moves the
   * group's last socket into its index, and the steering program must keep
   * meaning what it says for the others (socket(7), SO_ATTACH_REUSEPORT_CBPF).
   */
  private async retireLast (): Promise<void> {
    const slot = this.slotList[this.slotList.length - 1] as Slot
    if (this.slotList.length <= 1) throw new FST_REUSEPORT_INVALID_OPTION('workers', 'cannot retire the last slot', 0)
    slot.retiring = true
    if (slot.respawnTimer) clearTimeout(slot.respawnTimer)
    this.updateSteering()
    this.emit('slot', this.slots()[slot.index])
    this.log.info({ slot: slot.index }, `scale: ${this.line(slot)} steered out, serving what is queued on it`)
    // No new connection comes to it now. Its worker accepts what is queued;
    // handshakes already in its SYN queue have no counter (TCP_INFO shows only
    // the accept queue), so they get a grace period to complete.
    const deadline = Date.now() + this.settings.handshakeGrace
    // A worker that cannot empty its queue (stuck) gets the close grace delay more, not forever.
    const giveUp = deadline + this.settings.config.graceMs
    while (slot.worker?.state === 'ready' && (Date.now() < deadline || (this.queued(slot) > 0 && Date.now() < giveUp))) await sleep(20)
    const worker = slot.worker
    if (worker && worker.state !== 'exited') {
      this.drainWorker(worker)
      await worker.exited
    }
    this.slotList.pop()
    closeListeners(this.binding, slot.listeners)
    this.updateSteering()
    this.log.info({ slot: slot.index }, `scale: slot ${slot.index + 1} retired, ${this.slotList.length} left`)
    this.emit('scale', this.slotList.length)
  }

  /**
   * One sample per SAMPLE_MS. A slot is stalled when
   * - its worker has sent no health report for two intervals while its accept
   *   queue grows: the fast signal, caught within about 100 ms;
   * - its worker has been silent, or reported a loop delay, past stallTimeout;
   * - its accept queue holds stallQueue or more while its worker accepts
   *   nothing (a report came and the accepted count did not move).
   * Only while another slot is healthy (it reported within two intervals):
   * under even saturation every loop runs late and every queue is long, and
   * steering would only move the load around. Never steer out the last
   * healthy slot.
   */
  private sample (): void {
    const { stallTimeout, stallQueue, config: { healthMs } } = this.settings
    if (this.closing) return
    const now = Date.now()
    const serving = this.slotList.filter(s => s.worker?.state === 'ready' && !s.retiring)
    const healthy = new Set(serving.filter(s => !s.stalled && now - (s.worker as Worker).healthAt <= 2 * healthMs))
    for (const slot of serving) {
      const w = slot.worker as Worker
      const queued = this.queued(slot)
      const growing = queued > 0 && queued > slot.lastQueued
      slot.lastQueued = queued
      if (queued < stallQueue) slot.queueFull = null
      else slot.queueFull ??= { since: now, accepted: w.accepted }
      const notAccepting = slot.queueFull !== null && w.healthAt > slot.queueFull.since + healthMs &&
        w.accepted === slot.queueFull.accepted
      const silentMs = now - w.healthAt
      const reason = silentMs > stallTimeout || (growing && silentMs > 2 * healthMs)
        ? `event loop silent for ${silentMs} ms, ${queued} connections queued`
        : w.delayMs > stallTimeout
          ? `event loop delay ${Math.round(w.delayMs)} ms`
          : notAccepting ? `${queued} connections queued, none accepted` : null
      if (!slot.stalled && reason !== null) {
        if (![...healthy].some(s => s !== slot)) continue
        healthy.delete(slot)
        slot.stalled = true
        slot.stalls++
        this.updateSteering()
        this.log.warn({ slot: slot.index, workerPid: w.pid, queued, reason }, `${this.line(slot)}: stalled (${reason}); steered out`)
        this.emit('stall', { slot: slot.index, pid: w.pid, reason })
        this.emit('slot', this.slots()[slot.index])
      } else if (slot.stalled && reason === null && queued === 0 && silentMs <= 2 * healthMs) {
        slot.stalled = false
        this.updateSteering()
        this.log.info({ slot: slot.index, workerPid: w.pid }, `${this.line(slot)}: recovered; back in rotation`)
        this.emit('recover', { slot: slot.index, pid: w.pid })
        this.emit('slot', this.slots()[slot.index])
      }
    }
  }

  async close ({ drainDelay = 0 }: { drainDelay?: number } = {}): Promise<void> {
    if (this.closing) return
    this.closing = true
    if (this.sampler) clearInterval(this.sampler)
    if (this.reaper) clearInterval(this.reaper)
    for (const s of this.slotList) if (s.respawnTimer) clearTimeout(s.respawnTimer)
    if (drainDelay > 0) {
      this.log.info(`shutdown: serving for ${drainDelay} ms more (drain delay)`)
      await sleep(drainDelay)
    }
    if (this.started) this.log.info(`shutdown: draining ${this.slotList.length} workers`)
    for (const w of this.live) {
      // A worker still starting serves nothing yet, and listens for no drain message.
      if (w.state === 'starting') w.child.kill('SIGKILL')
      else if (w.state === 'ready') this.drainWorker(w)
    }
    await Promise.all([...this.live].map(w => w.exited))
    for (const s of this.slotList) closeListeners(this.binding, s.listeners)
    if (this.metrics) await new Promise(resolve => this.metrics?.close(resolve))
    process.off('exit', this.killAll)
    if (this.started) this.log.info('shutdown: done')
    this.emit('close')
  }

  /** Steers new connections to the slots that serve (DESIGN.md, "Steering"). */
  private updateSteering (): void {
    if (!this.steering || this.closing) return
    const serving = this.slotList.filter(s => s.worker?.state === 'ready' && !s.stalled && !s.retiring).map(s => s.index)
    const all = serving.length === this.slotList.length || serving.length === 0
    for (const l of (this.slotList[0] as Slot).listeners) {
      try {
        if (all) this.binding.detachSteering(l.fd)
        else this.binding.attachSteering(l.fd, steerProgram(serving))
      } catch (err) {
        this.log.warn({ err }, 'steering update failed; the kernel hash stays in charge')
      }
    }
  }

  private probeSteering (): boolean {
    const fd = this.slotList[0]?.listeners[0]?.fd
    if (fd === undefined) return false
    try {
      this.binding.attachSteering(fd, steerProgram(this.slotList.map(s => s.index)))
      this.binding.detachSteering(fd)
      return true
    } catch {
      return false
    }
  }
}

/** net.ipv4.tcp_migrate_req of this network namespace: null before Linux 5.14. */
export function readMigrateReq (): boolean | null {
  try {
    return fs.readFileSync('/proc/sys/net/ipv4/tcp_migrate_req', 'utf8').trim() === '1'
  } catch {
    return null
  }
}
