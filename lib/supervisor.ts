import { spawn, type ChildProcess } from 'node:child_process'
import { EventEmitter } from 'node:events'
import fs from 'node:fs'
import path from 'node:path'
import pino, { type Logger } from 'pino'
import { availableCpus } from './cpus'
import { FST_REUSEPORT_APP_NOT_FOUND, FST_REUSEPORT_INVALID_OPTION, FST_REUSEPORT_READY_TIMEOUT, FST_REUSEPORT_UNSUPPORTED, FST_REUSEPORT_WORKER_FAILED } from './errors'
import { LISTENERS_ENV, closeListeners, openListeners, parsePort, resolveHost, type Listener } from './listener'
import { isWorkerMessage, WORKER_ENV, type SupervisorMessage, type WorkerConfig } from './messages'
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
  /** How long a draining worker may take before it is killed, ms. Default 10000. */
  closeGraceDelay?: number
  /** How long a new worker may take to become ready, ms. Default 30000. */
  readyTimeout?: number
  /** A pino logger for the supervisor's own lines; one is made from logLevel otherwise. */
  logger?: Logger
}

export type SlotState = 'starting' | 'ready' | 'draining' | 'dead'

export interface SlotInfo {
  slot: number
  state: SlotState
  pid: number | null
  restarts: number
  lastExit: string | null
  queued: number
}

export interface SupervisorHandle extends EventEmitter {
  readonly port: number
  readonly addresses: string[]
  /** Pids of the workers that serve, in slot order. */
  pids (): number[]
  slots (): SlotInfo[]
  /** Rolling restart, slot by slot, re-reading the app from disk. Rejects, keeping the old workers, when a new one fails. */
  reload (): Promise<void>
  /** Drains every worker, closes the slots. */
  close (options?: { drainDelay?: number }): Promise<void>
}

interface Worker {
  child: ChildProcess
  pid: number
  state: 'starting' | 'ready' | 'draining' | 'exited'
  startedAt: number
  exited: Promise<void>
}

interface Slot {
  index: number
  listeners: Listener[]
  worker: Worker | null
  restarts: number
  failures: number
  lastExit: string | null
  respawnTimer: NodeJS.Timeout | null
}

const WORKER_SCRIPT = path.join(__dirname, 'worker.js')

function positiveInt (name: string, value: unknown, min = 0): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new FST_REUSEPORT_INVALID_OPTION(name, `must be an integer >= ${min}`, received(value))
  }
  return value
}

function describeExit (code: number | null, signal: NodeJS.Signals | null): string {
  return signal !== null ? `signal ${signal}` : `code ${code}`
}

/** Runs an app on N workers, each serving its own SO_REUSEPORT socket owned here. */
export async function start (options: StartOptions): Promise<SupervisorHandle> {
  if (typeof options !== 'object' || options === null) throw new FST_REUSEPORT_INVALID_OPTION('options', 'must be an object', received(options))
  if (typeof options.app !== 'string' || options.app === '') throw new FST_REUSEPORT_INVALID_OPTION('app', 'must be the path of an app file', received(options.app))
  const workers = options.workers === undefined || options.workers === 'auto' ? availableCpus() : positiveInt('workers', options.workers, 1)
  const port = parsePort(options.port ?? 3000)
  const backlog = options.backlog === undefined ? 511 : validateBacklog(options.backlog)
  const graceMs = positiveInt('closeGraceDelay', options.closeGraceDelay ?? 10000)
  const readyTimeout = positiveInt('readyTimeout', options.readyTimeout ?? 30000, 1)
  const host = options.host ?? 'localhost'
  if (typeof host !== 'string') throw new FST_REUSEPORT_INVALID_OPTION('host', 'must be a string', received(host))
  const app = path.resolve(options.app)
  const log = options.logger ?? makeLogger(options.logLevel ?? 'info', options.prettyLogs === true)
  if (!fs.existsSync(app)) throw new FST_REUSEPORT_APP_NOT_FOUND(app)

  const { binding, reason } = loadNative()
  if (binding === null) throw new FST_REUSEPORT_UNSUPPORTED(reason)

  // Slot sockets, in slot order: socket i of each reuseport group is slot i,
  // which is what the steering program's return value indexes.
  const addresses = await resolveHost(host)
  const slots: Slot[] = []
  try {
    let first: Listener[] | null = null
    for (let i = 0; i < workers; i++) {
      const listeners = openListeners(binding, first === null ? addresses : first, { port: first?.[0]?.port ?? port, backlog, ipv6Only: options.ipv6Only === true })
      first ??= listeners
      slots.push({ index: i, listeners, worker: null, restarts: 0, failures: 0, lastExit: null, respawnTimer: null })
    }
  } catch (err) {
    for (const s of slots) closeListeners(binding, s.listeners)
    throw err
  }
  const bound = (slots[0] as Slot).listeners
  const handle = new Supervisor(binding, log, slots, {
    app,
    logLevel: options.logLevel ?? 'info',
    prettyLogs: options.prettyLogs === true,
    useOptions: options.options === true,
    prefix: options.prefix,
    pluginTimeout: options.pluginTimeout ?? 10000,
    bodyLimit: options.bodyLimit,
    idleMs: Math.min(1000, Math.max(50, Math.floor(graceMs / 4))),
    graceMs
  }, readyTimeout, bound[0]?.port ?? port, bound.map(l => (l.family === 6 ? `[${l.address}]` : l.address) + ':' + l.port))

  try {
    await Promise.all(slots.map(s => handle.spawnReady(s)))
  } catch (err) {
    await handle.close()
    throw err
  }
  handle.logStarted()
  return handle
}

class Supervisor extends EventEmitter implements SupervisorHandle {
  private closing = false
  private reloading: Promise<void> | null = null
  private readonly steering: boolean

  constructor (
    private readonly binding: NativeBinding,
    private readonly log: Logger,
    private readonly slotList: Slot[],
    private readonly config: Omit<WorkerConfig, 'slot'>,
    private readonly readyTimeout: number,
    readonly port: number,
    readonly addresses: string[]
  ) {
    super()
    this.steering = this.probeSteering()
    // Nobody must outlive us, even on process.exit() from a second signal.
    process.once('exit', () => { for (const s of this.slotList) s.worker?.child.kill('SIGKILL') })
  }

  pids (): number[] {
    return this.slotList.flatMap(s => s.worker?.state === 'ready' ? [s.worker.pid] : [])
  }

  slots (): SlotInfo[] {
    return this.slotList.map(s => ({
      slot: s.index,
      state: this.slotState(s),
      pid: s.worker?.pid ?? null,
      restarts: s.restarts,
      lastExit: s.lastExit,
      queued: this.queued(s)
    }))
  }

  private slotState (s: Slot): SlotState {
    const state = s.worker?.state
    return state === undefined || state === 'exited' ? 'dead' : state
  }

  private queued (s: Slot): number {
    let n = 0
    for (const l of s.listeners) {
      try { n += this.binding.queueInfo(l.fd).queued } catch { /* closed during shutdown */ }
    }
    return n
  }

  logStarted (): void {
    const n = this.slotList.length
    for (const s of this.slotList) {
      this.log.info({ slot: s.index, workerPid: s.worker?.pid, addresses: this.addresses }, `slot ${s.index + 1} of ${n}: worker ${s.worker?.pid} serving ${this.addresses.join(', ')}`)
    }
    const migrate = readMigrateReq()
    this.log.info({ handoff: true, tcpMigrateReq: migrate, steering: this.steering },
      `safety nets: socket handoff on; net.ipv4.tcp_migrate_req ${migrate === null ? 'unavailable (Linux < 5.14)' : migrate ? 'on' : 'off'}; classic BPF steering ${this.steering ? 'attached on demand' : 'unavailable'}`)
  }

  /** Starts a worker on the slot's fds and resolves once it serves; it is then the slot's worker. */
  async spawnReady (slot: Slot): Promise<Worker> {
    const worker = this.spawn(slot)
    try {
      await this.waitReady(slot, worker)
    } catch (err) {
      worker.child.kill('SIGKILL')
      await worker.exited
      throw err
    }
    const previous = slot.worker
    slot.worker = worker
    worker.state = 'ready'
    this.updateSteering()
    if (previous && previous.state !== 'exited') this.drainWorker(previous)
    return worker
  }

  private spawn (slot: Slot): Worker {
    const fds = slot.listeners.map(l => l.fd)
    // stdio index = fd number in the child: 3 is IPC, the listeners follow.
    const inherited = slot.listeners.map((l, i) => ({ ...l, fd: 4 + i }))
    const child = spawn(process.execPath, [...process.execArgv, WORKER_SCRIPT], {
      stdio: ['inherit', 'inherit', 'inherit', 'ipc', ...fds],
      env: {
        ...process.env,
        [LISTENERS_ENV]: JSON.stringify(inherited),
        [WORKER_ENV]: JSON.stringify({ ...this.config, slot: slot.index } satisfies WorkerConfig)
      }
    })
    const worker: Worker = {
      child,
      pid: child.pid ?? -1,
      state: 'starting',
      startedAt: Date.now(),
      exited: new Promise(resolve => child.once('exit', () => resolve()))
    }
    child.once('exit', (code, signal) => this.onExit(slot, worker, code, signal))
    return worker
  }

  private waitReady (slot: Slot, worker: Worker): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(new FST_REUSEPORT_READY_TIMEOUT(slot.index, this.readyTimeout)), this.readyTimeout)
      const onMessage = (m: unknown): void => {
        if (!isWorkerMessage(m)) return
        if (m.type === 'ready') finish(null)
        else finish(new FST_REUSEPORT_WORKER_FAILED(slot.index, `${m.message} (${m.code})`))
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
    const kill = setTimeout(() => worker.child.kill('SIGKILL'), this.config.graceMs + 1000)
    void worker.exited.then(() => clearTimeout(kill))
  }

  private onExit (slot: Slot, worker: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    const wasServing = worker.state === 'ready' && slot.worker === worker
    worker.state = 'exited'
    if (!wasServing) return
    slot.lastExit = describeExit(code, signal)
    this.updateSteering()
    if (this.closing) return
    // Its socket lives on here: connections queued on it wait for the replacement.
    slot.failures = Date.now() - worker.startedAt > 10000 ? 0 : slot.failures + 1
    const delay = Math.min(10000, 100 * 2 ** Math.max(0, slot.failures - 1))
    this.log.error({ slot: slot.index, workerPid: worker.pid, code, signal }, `slot ${slot.index + 1} of ${this.slotList.length}: worker ${worker.pid} exited with ${slot.lastExit}; respawning in ${delay} ms`)
    this.emit('exit', { slot: slot.index, pid: worker.pid, code, signal })
    slot.respawnTimer = setTimeout(() => { slot.respawnTimer = null; this.respawn(slot) }, delay)
  }

  private respawn (slot: Slot): void {
    if (this.closing) return
    slot.restarts++
    this.spawnReady(slot).then(w => {
      this.log.info({ slot: slot.index, workerPid: w.pid }, `slot ${slot.index + 1} of ${this.slotList.length}: worker ${w.pid} ready`)
      this.emit('respawn', { slot: slot.index, pid: w.pid })
    }, (err: Error) => {
      if (this.closing) return
      slot.failures++
      const delay = Math.min(10000, 100 * 2 ** slot.failures)
      this.log.error({ slot: slot.index, err }, `slot ${slot.index + 1} of ${this.slotList.length}: ${err.message}; retrying in ${delay} ms`)
      slot.respawnTimer = setTimeout(() => { slot.respawnTimer = null; this.respawn(slot) }, delay)
    })
  }

  reload (): Promise<void> {
    // Coalesce: a reload asked for during one runs once after it.
    const run = (this.reloading ?? Promise.resolve()).catch(() => {}).then(() => this.rollingRestart())
    this.reloading = run.finally(() => { if (this.reloading === run) this.reloading = null })
    return run
  }

  private async rollingRestart (): Promise<void> {
    const n = this.slotList.length
    for (const slot of this.slotList) {
      if (this.closing) return
      if (slot.worker?.state !== 'ready') continue // a dead slot is being respawned with the new code anyway
      const old = slot.worker
      try {
        const next = await this.spawnReady(slot)
        slot.restarts++
        this.log.info({ slot: slot.index, workerPid: next.pid, oldPid: old.pid }, `reload: slot ${slot.index + 1} of ${n}: worker ${next.pid} ready, draining ${old.pid}`)
      } catch (err) {
        this.log.error({ slot: slot.index, err }, `reload: slot ${slot.index + 1} of ${n}: ${(err as Error).message}; keeping worker ${old.pid}, reload stopped`)
        throw err
      }
    }
    this.log.info(`reload: all ${n} slots replaced`)
    this.emit('reloaded')
  }

  async close ({ drainDelay = 0 }: { drainDelay?: number } = {}): Promise<void> {
    if (this.closing) return
    this.closing = true
    for (const s of this.slotList) if (s.respawnTimer) clearTimeout(s.respawnTimer)
    if (drainDelay > 0) {
      this.log.info(`shutdown: serving for ${drainDelay} ms more (drain delay)`)
      await new Promise(resolve => setTimeout(resolve, drainDelay))
    }
    this.log.info(`shutdown: draining ${this.slotList.length} workers`)
    const exits: Array<Promise<void>> = []
    for (const s of this.slotList) {
      const w = s.worker
      if (w && w.state !== 'exited') {
        if (w.state !== 'draining') this.drainWorker(w)
        exits.push(w.exited)
      }
    }
    await Promise.all(exits)
    for (const s of this.slotList) closeListeners(this.binding, s.listeners)
    this.log.info('shutdown: done')
    this.emit('close')
  }

  /** Steers new connections away from slots with no serving worker (DESIGN.md, "Steering"). */
  private updateSteering (): void {
    if (!this.steering || this.closing) return
    const ready = this.slotList.filter(s => s.worker?.state === 'ready').map(s => s.index)
    const all = ready.length === this.slotList.length || ready.length === 0
    for (const l of (this.slotList[0] as Slot).listeners) {
      try {
        if (all) this.binding.detachSteering(l.fd)
        else this.binding.attachSteering(l.fd, steerProgram(ready))
      } catch (err) {
        this.log.warn({ err }, 'steering update failed; the kernel hash stays in charge')
      }
    }
  }

  private probeSteering (): boolean {
    const fd = (this.slotList[0] as Slot).listeners[0]?.fd
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

/** The supervisor's logger: pino, JSON lines, or pino-pretty with -P. */
export function makeLogger (level: string, pretty: boolean): Logger {
  return pino({
    level,
    base: { pid: process.pid, role: 'supervisor' },
    ...(pretty ? { transport: { target: 'pino-pretty' } } : {})
  })
}

/** net.ipv4.tcp_migrate_req of this network namespace: null before Linux 5.14. */
export function readMigrateReq (): boolean | null {
  try {
    return fs.readFileSync('/proc/sys/net/ipv4/tcp_migrate_req', 'utf8').trim() === '1'
  } catch {
    return null
  }
}

