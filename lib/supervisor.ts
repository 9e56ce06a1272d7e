// The supervisor: owns one listening socket per slot, runs one worker per
// slot on it, and executes what lib/policy.ts decides (stalls, replacements,
// respawns, crash loops). The slot table is the one truth: every worker
// process belongs to the slot that started it and never outlives it.
import { EventEmitter } from 'node:events'
import fs from 'node:fs'
import type http from 'node:http'
import pino, { type Logger } from 'pino'
import { availableCpus } from './cpus'
import { FST_REUSEPORT_APP_NOT_FOUND, FST_REUSEPORT_CRASH_LOOP, FST_REUSEPORT_INVALID_OPTION, FST_REUSEPORT_READY_TIMEOUT, FST_REUSEPORT_UNSUPPORTED, FST_REUSEPORT_WORKER_FAILED, reviveError } from './errors'
import { Handoff } from './handoff'
import { createLineForwarder, type LineForwarder } from './logs'
import { closeListeners, openListeners, resolveHost } from './listener'
import { isFatalMessage, isWorkerMessage, type SupervisorMessage, type WorkerConfig } from './messages'
import { serveMetrics } from './metrics'
import { loadNative, type NativeBinding } from './native'
import { received, resolveStartOptions, type Balancer, type StartOptions, type StartSettings } from './options'
import {
  crashLooping, failuresAfterExit, freshStallMemory, lastServed, mayShed, mayStall, nextReplacement, recovered, replaceReason, SETTLED_MS,
  requestLimit, respawnDelay, stallReason, type ReplaceReason
} from './policy'
import { newSlot, slotInfo, type Slot, type Worker } from './slot'
import { probePort } from './port-probe'
import { spawnWorker, type Exit } from './spawn'
import type { SlotLoad } from './balance'
import { Steerer } from './steerer'

import type { SlotInfo, SupervisorHandle } from './handle'

export type { StartOptions } from './options'
export type { ReplaceReason } from './policy'
export type { SlotInfo, SlotState, SupervisorEvents, SupervisorHandle } from './handle'

interface Settings extends StartSettings {
  config: Omit<WorkerConfig, 'slot' | 'control' | 'supervisorPid'>
  balancer: Balancer
  /** Why the cluster balancer runs, when it was not asked for. */
  fallbackReason: string | null
}

// A stuck worker gets its share of new connections until it is steered out:
// detection time is what this feature sells. 50 samples/s of TCP_INFO per
// slot and 20 health reports/s per worker cost well under 1% of a core.
const SAMPLE_MS = 20
const HEALTH_MS = 50
// Without stall steering, the replacement and crash-loop rules need no more.
const CHECK_MS = 100
// A replacement that failed to boot is not tried again on that slot sooner.
const REPLACE_RETRY_MS = 10000

function describeExit ({ code, signal, error }: Exit): string {
  if (error !== null) return `spawn error ${(error as NodeJS.ErrnoException).code ?? error.message}`
  return signal !== null ? `signal ${signal}` : `code ${code}`
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** The supervisor's logger: pino, JSON lines, or pino-pretty with -P. */
export function makeLogger (level: string, pretty: boolean): Logger {
  const options = { level, base: { pid: process.pid, role: 'supervisor' } }
  // Through process.stdout, the stream the workers' lines are forwarded to
  // (lib/logs.ts): pino's own fd writes could land inside a forwarded line
  // still queued there, since stdout on a pipe is non-blocking.
  return pretty ? pino({ ...options, transport: { target: 'pino-pretty' } }) : pino(options, process.stdout)
}

/** Runs an app on N workers, each serving its own SO_REUSEPORT socket owned here. */
export async function start (options: StartOptions & { logger?: Logger }): Promise<SupervisorHandle> {
  const s = resolveStartOptions(options)
  const workers = s.workers === 'auto' ? availableCpus() : s.workers
  const settings: Settings = {
    ...s,
    config: {
      app: s.app,
      logLevel: s.logLevel,
      prettyLogs: s.prettyLogs,
      useOptions: s.useOptions,
      prefix: s.prefix,
      pluginTimeout: s.pluginTimeout,
      bodyLimit: s.bodyLimit,
      idleMs: Math.min(1000, Math.max(50, Math.floor(s.graceMs / 4))),
      graceMs: s.graceMs,
      crashGraceMs: s.crashGraceMs,
      healthMs: s.stallTimeout > 0 ? Math.min(HEALTH_MS, Math.max(10, Math.floor(s.stallTimeout / 4))) : 250,
      countRequests: s.maxRequests > 0,
      listen: null
    },
    balancer: 'reuseport',
    fallbackReason: null
  }
  const log = options.logger ?? makeLogger(s.logLevel, s.prettyLogs)
  if (!fs.existsSync(s.app)) throw new FST_REUSEPORT_APP_NOT_FOUND(s.app)

  // Where SO_REUSEPORT cannot balance (macOS, Windows, no addon), Node's
  // cluster round-robin serves instead: same flags, signals, drain, respawn.
  const { binding, reason } = loadNative()
  if (s.balancer === 'reuseport' && binding === null) throw new FST_REUSEPORT_UNSUPPORTED(reason)
  settings.balancer = s.balancer ?? (binding === null ? 'cluster' : 'reuseport')
  settings.fallbackReason = s.balancer === undefined ? reason : null

  if (!s.join) await probePort(await resolveHost(s.host), s.port, s.ipv6Only)
  if (settings.balancer === 'cluster') settings.config.listen = { port: s.port, host: s.host, backlog: s.backlog }
  const supervisor = new Supervisor(settings.balancer === 'reuseport' ? binding : null, log, settings)
  options.signal?.throwIfAborted()
  options.signal?.addEventListener('abort', () => { void supervisor.close() }, { once: true })
  try {
    await supervisor.open(await resolveHost(s.host), workers)
    if (s.metricsPort !== undefined) await supervisor.serveMetrics(s.metricsPort, s.host)
  } catch (err) {
    // The caller reports the error: a failed start says nothing else.
    await supervisor.shutdown(0, true)
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
  private closed: Promise<void> | null = null
  /** Reloads, scale changes and graceful replacements run one at a time, in order. */
  private queue: Promise<unknown> = Promise.resolve()
  private pending = 0
  /** null under the cluster balancer. */
  private steerer: Steerer | null = null
  private ticker: NodeJS.Timeout | null = null
  private reaper: NodeJS.Timeout | null = null
  private metrics: http.Server | null = null
  /** The last moment some slot had a ready worker. */
  private lastServedAt = Date.now()
  private handoffTurn = 0
  /** Each worker writes to pipes of its own; only whole lines reach ours. */
  private readonly stdout: LineForwarder = createLineForwarder(process.stdout)
  private readonly stderr: LineForwarder = createLineForwarder(process.stderr)

  constructor (
    /** null under the cluster balancer: no slot sockets, no steering, no queue to read. */
    private readonly binding: NativeBinding | null,
    private readonly log: Logger,
    private readonly settings: Settings
  ) {
    super()
    // Nobody must outlive us, even on process.exit() from a second signal.
    process.once('exit', this.killAll)
  }

  private * allWorkers (): Generator<Worker> {
    for (const s of this.slotList) yield * s.workers
  }

  private readonly killAll = (): void => { for (const w of this.allWorkers()) w.proc.kill('SIGKILL') }

  /** Opens the slots in slot order (socket i of each reuseport group is slot i) and starts their workers. */
  async open (addresses: Array<{ address: string, family: 4 | 6 }>, n: number): Promise<void> {
    this.template = addresses
    for (let i = 0; i < n; i++) this.addSlot()
    if (this.binding !== null) this.steerer = new Steerer(this.binding, (this.slotList[0] as Slot).listeners, this.log, this.settings.balance, n)
    const ready = await Promise.all(this.slotList.map(s => this.spawnReady(s)))
    // Under the cluster balancer the workers chose the port (port 0) and know the addresses.
    if (this.binding === null) {
      this.addresses = ready[0]?.addresses ?? []
      this.port = Number(/:(\d+)$/.exec(this.addresses[0] ?? '')?.[1] ?? this.settings.port)
    }
    this.lastServedAt = Date.now()
    this.ticker = setInterval(() => this.tick(), this.settings.stallTimeout > 0 ? SAMPLE_MS : CHECK_MS)
    this.ticker.unref()
    if (process.pid === 1 && this.binding !== null) {
      this.reaper = setInterval(() => this.reap(), 1000)
      this.reaper.unref()
    }
  }

  /** As PID 1 (a container's entrypoint), orphaned processes are ours to reap. */
  private reap (): void {
    try {
      this.binding?.reapOrphans([...this.allWorkers()].map(w => w.pid))
    } catch (err) {
      this.log.warn({ err }, 'could not reap orphaned processes')
    }
  }

  private addSlot (): Slot {
    const { port, backlog, ipv6Only } = this.settings
    const listeners = this.binding === null ? [] : openListeners(this.binding, this.template, { port: this.port || port, backlog, ipv6Only })
    if (this.slotList.length === 0 && this.binding !== null) {
      this.template = listeners.map(({ address, family }) => ({ address, family }))
      this.port = listeners[0]?.port ?? port
      this.addresses = listeners.map(l => (l.family === 6 ? `[${l.address}]` : l.address) + ':' + l.port)
    }
    const slot = newSlot(this.slotList.length, listeners)
    this.slotList.push(slot)
    return slot
  }

  async serveMetrics (port: number, host: string): Promise<void> {
    this.metrics = await serveMetrics(port, host, () => this.slots(), { onError: err => this.log.warn({ err }, 'metrics: accept failed') })
    const address = this.metrics.address()
    this.metricsPort = typeof address === 'object' && address !== null ? address.port : port
  }

  pids (): number[] {
    return this.slotList.flatMap(s => s.worker?.state === 'ready' ? [s.worker.pid] : [])
  }

  slots (): SlotInfo[] {
    return this.slotList.map(s => this.info(s))
  }

  private info (s: Slot): SlotInfo {
    return slotInfo(s, this.queued(s))
  }

  private queued (s: Slot): number {
    let n = 0
    for (const l of s.listeners) {
      try { n += this.binding?.queueInfo(l.fd).queued ?? 0 } catch { /* closed while retiring or shutting down */ }
    }
    return n
  }

  /** Slot numbers are 1-based in every message, 0-based in fields. */
  private line (s: Slot): string {
    return `slot ${s.index + 1} of ${this.slotList.length}`
  }

  private changed (s: Slot): void {
    if (!s.closed) this.emit('slot', this.info(s))
  }

  logStarted (): void {
    for (const s of this.slotList) {
      this.log.info({ slot: s.index, workerPid: s.worker?.pid, addresses: this.addresses }, `${this.line(s)}: worker ${s.worker?.pid} serving ${this.addresses.join(', ')}`)
    }
    if (this.binding === null) {
      const why = this.settings.fallbackReason ?? 'forced by --balancer cluster'
      this.log.info({ balancer: 'cluster', reason: why },
        `safety nets: balancer cluster round-robin (${why}): the supervisor accepts every connection and passes it to a worker; no socket handoff, no steering`)
      if (this.metricsPort !== null) this.log.info(`metrics: http://${this.addresses[0]?.replace(/:\d+$/, '')}:${this.metricsPort}/metrics`)
      return
    }
    const migrate = readMigrateReq()
    const steering = this.steerer?.available === true
    this.log.info({ balancer: 'reuseport', handoff: true, tcpMigrateReq: migrate, steering },
      `safety nets: socket handoff on; net.ipv4.tcp_migrate_req ${migrate === null ? 'unavailable (Linux < 5.14)' : migrate ? 'on' : 'off'}; classic BPF steering ${steering ? 'attached on demand' : 'unavailable'}`)
    if (this.metricsPort !== null) this.log.info(`metrics: http://${this.addresses[0]?.replace(/:\d+$/, '')}:${this.metricsPort}/metrics`)
  }

  /** Starts a worker on the slot's fds and resolves once it serves; it is then the slot's worker. */
  private async spawnReady (slot: Slot): Promise<Worker> {
    const worker = this.spawn(slot)
    try {
      await this.waitReady(worker)
      // A slot retired, or a shutdown begun, while it booted: it must not serve a socket nobody owns.
      if (slot.closed || slot.retiring || this.closing) throw new FST_REUSEPORT_WORKER_FAILED(slot.index + 1, 'its slot was retired while it started')
    } catch (err) {
      worker.proc.kill('SIGKILL')
      await worker.proc.exited
      throw err
    }
    this.promote(slot, worker)
    return worker
  }

  /** `worker` now serves `slot`; the one it replaces drains. */
  private promote (slot: Slot, worker: Worker): void {
    const previous = slot.worker
    this.release(slot)
    slot.worker = worker
    worker.state = 'ready'
    worker.readyAt = worker.healthAt = Date.now()
    slot.stalled = false
    slot.stallMemory = freshStallMemory()
    slot.orphaned = false
    this.stopHandoff(slot)
    this.updateSteering()
    this.changed(slot)
    if (previous !== null && previous.state === 'ready') this.drainWorker(previous)
    // Slots orphaned while no other worker served get their queue served now.
    for (const s of this.slotList) this.startHandoff(s)
  }

  /** The slot's worker stops being its worker (replaced, hung, exited). */
  private release (slot: Slot): void {
    const w = slot.worker
    if (w === null) return
    slot.acceptedBefore += w.accepted
    slot.worker = null
  }

  private spawn (slot: Slot): Worker {
    const { config, preload, maxRequests, maxRequestsJitter } = this.settings
    const proc = spawnWorker({ listeners: slot.listeners, config: { ...config, slot: slot.index }, preload, output: 'pipe', viaCluster: this.binding === null })
    if (proc.child?.stdout) this.stdout.add(proc.child.stdout)
    if (proc.child?.stderr) this.stderr.add(proc.child.stderr)
    const now = Date.now()
    const worker: Worker = {
      proc,
      pid: proc.pid,
      slot,
      state: 'starting',
      startedAt: now,
      readyAt: null,
      addresses: [],
      healthAt: now,
      delayMs: 0,
      accepted: 0,
      open: 0,
      rss: 0,
      requests: 0,
      requestLimit: requestLimit(maxRequests, maxRequestsJitter, Math.random()),
      error: null
    }
    slot.workers.add(worker)
    proc.channel?.on('message', (m: unknown) => {
      if (isFatalMessage(m)) worker.error = reviveError(m.error)
      if (!isWorkerMessage(m)) return
      if (m.type === 'crashing') this.onCrashing(worker)
      else if (m.type === 'health') {
        worker.healthAt = Date.now()
        worker.delayMs = m.delayMs
        worker.accepted = m.accepted
        worker.open = m.open
        worker.rss = m.rss
        worker.requests = m.requests
      }
    })
    void proc.exited.then(exit => this.onExit(worker, exit))
    return worker
  }

  private waitReady (worker: Worker): Promise<void> {
    const { readyTimeout } = this.settings
    const n = worker.slot.index + 1
    return new Promise((resolve, reject) => {
      let settled = false
      const timer = setTimeout(() => finish(new FST_REUSEPORT_READY_TIMEOUT(n, readyTimeout)), readyTimeout)
      const onMessage = (m: unknown): void => {
        if (!isWorkerMessage(m)) return
        if (m.type === 'ready') {
          worker.addresses = m.addresses
          finish(null)
        }
        // The 'fatal' message before it carried the error itself: Node's text, with the location of a syntax error.
        else if (m.type === 'error') finish(new FST_REUSEPORT_WORKER_FAILED(n, `${m.message} (${m.code})`, ...(worker.error ? [{ cause: worker.error }] : [])))
      }
      const finish = (err: Error | null): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        worker.proc.channel?.off('message', onMessage)
        if (err) reject(err)
        else resolve()
      }
      worker.proc.channel?.on('message', onMessage)
      void worker.proc.exited.then(exit => finish(new FST_REUSEPORT_WORKER_FAILED(n, exit.error !== null
        ? describeExit(exit)
        : `exited with ${describeExit(exit)} before it was ready`)))
    })
  }

  /** A worker silent this long is hung, not slow: it cannot drain, so it is not waited for. */
  private hung (w: Worker, now = Date.now()): boolean {
    return now - w.healthAt > Math.max(1000, this.settings.stallTimeout)
  }

  private drainWorker (worker: Worker): void {
    if (worker.state === 'exited') return
    const wasReady = worker.state === 'ready'
    worker.state = 'draining'
    if (wasReady && this.hung(worker)) {
      this.log.warn({ slot: worker.slot.index, workerPid: worker.pid }, `${this.line(worker.slot)}: worker ${worker.pid} is hung (no health report for ${Date.now() - worker.healthAt} ms): killed instead of drained`)
      worker.proc.kill('SIGKILL')
      return
    }
    const message: SupervisorMessage = { type: 'drain' }
    void worker.proc.channel?.send(message)
    // The worker gives up on its own at graceMs; this is for one that cannot.
    const kill = setTimeout(() => worker.proc.kill('SIGKILL'), this.settings.graceMs + 1000)
    void worker.proc.exited.then(() => clearTimeout(kill))
  }

  private onExit (worker: Worker, exit: Exit): void {
    const slot = worker.slot
    slot.workers.delete(worker)
    const wasServing = slot.worker === worker && worker.state === 'ready'
    const wasDraining = worker.state === 'draining'
    worker.state = 'exited'
    const err = worker.error
    // A crashed worker's error was logged when it said so (onCrashing).
    if (wasDraining && worker.crashedAt === undefined && (err !== null || (exit.code !== 0 && exit.signal === null))) {
      this.log.error({ slot: slot.index, workerPid: worker.pid, code: exit.code, signal: exit.signal, err }, `${this.line(slot)}: draining worker ${worker.pid} exited with ${describeExit(exit)}${err ? `: ${err.message}` : ''}`)
    }
    if (worker.crashedAt !== undefined) this.emit('exit', { slot: slot.index, pid: worker.pid, code: exit.code, signal: exit.signal, error: err })
    if (!wasServing) return
    if (this.lost(worker, `exited with ${describeExit(exit)}`, describeExit(exit), { code: exit.code, signal: exit.signal })) this.emit('exit', { slot: slot.index, pid: worker.pid, code: exit.code, signal: exit.signal, error: err })
  }

  /** An uncaught exception: the worker stops accepting and answers what it has (lib/crash.ts); its slot is treated as lost now. */
  private onCrashing (worker: Worker): void {
    if (worker.slot.worker !== worker || worker.state !== 'ready') return
    worker.crashedAt = Date.now()
    worker.state = 'draining'
    const kill = setTimeout(() => worker.proc.kill('SIGKILL'), this.settings.crashGraceMs + 1000)
    void worker.proc.exited.then(() => clearTimeout(kill))
    this.lost(worker, `crashed, answering what it has for up to ${this.settings.crashGraceMs} ms`, `uncaught ${worker.error?.name ?? 'exception'}`, { code: null, signal: null })
  }

  /** The slot's serving worker is gone or going: steer it out, hand its queue over, respawn. */
  private lost (worker: Worker, what: string, lastExit: string, exit: { code: number | null, signal: NodeJS.Signals | null }): boolean {
    const slot = worker.slot
    const err = worker.error
    this.release(slot)
    slot.orphaned = true
    slot.lastExit = lastExit
    slot.stalled = false
    this.updateSteering()
    this.changed(slot)
    if (this.closing || slot.retiring || slot.closed) return false
    // Its socket lives on here: connections queued on it wait for the replacement, or are handed over.
    const readyFor = worker.readyAt === null ? null : Date.now() - worker.readyAt
    slot.failures = failuresAfterExit(slot.failures, readyFor, worker.accepted)
    if (readyFor === null || readyFor < SETTLED_MS) slot.earlyDeaths++
    const delay = respawnDelay(slot.failures)
    this.log.error({ slot: slot.index, workerPid: worker.pid, code: exit.code, signal: exit.signal, ...(err ? { err } : {}) },
      `${this.line(slot)}: worker ${worker.pid} ${what}${err ? `: ${err.message}` : ''}; respawning ${delay > 0 ? `in ${delay} ms` : 'now'}`)
    if (this.pids().length === 0) for (const s of this.slotList) this.stopHandoff(s)
    // Not at once: when several workers die together (an app bug, a kill of
    // all), the others' exits are seen within milliseconds, and a connection
    // passed to a dead worker would be lost.
    else setTimeout(() => this.startHandoff(slot), 2 * this.settings.config.healthMs).unref()
    this.scheduleRespawn(slot, delay)
    return true
  }

  private scheduleRespawn (slot: Slot, delay: number): void {
    if (slot.respawnTimer) clearTimeout(slot.respawnTimer)
    slot.respawnTimer = setTimeout(() => { slot.respawnTimer = null; this.respawn(slot) }, delay)
  }

  private respawn (slot: Slot): void {
    if (this.closing || slot.retiring || slot.closed || slot.worker !== null) return
    if ([...slot.workers].some(w => w.state === 'starting')) return
    slot.restarts++
    const ready = this.spawnReady(slot)
    this.changed(slot)
    ready.then(w => {
      this.log.info({ slot: slot.index, workerPid: w.pid }, `${this.line(slot)}: worker ${w.pid} ready`)
      this.emit('respawn', { slot: slot.index, pid: w.pid })
    }, (err: Error) => {
      if (this.closing || slot.retiring || slot.closed) return
      slot.failures++
      const delay = respawnDelay(slot.failures)
      this.log.error({ slot: slot.index, err }, `${this.line(slot)}: ${err.message}; retrying in ${delay} ms`)
      this.changed(slot)
      this.scheduleRespawn(slot, delay)
    })
  }

  /** While a slot has no worker, a live worker of another slot serves its queue (lib/handoff.ts). */
  private startHandoff (slot: Slot): void {
    if (this.binding === null || !slot.orphaned || slot.worker !== null || slot.handoff !== null || this.closing || slot.closed || this.pids().length === 0) return
    this.log.info({ slot: slot.index }, `${this.line(slot)}: no worker; its queue is handed to the other workers until one is ready`)
    slot.handoff = new Handoff(this.binding, slot.listeners, () => {
      // Only a worker that reported lately: a killed one stops at once, before its exit is seen.
      const fresh = Date.now() - 2 * this.settings.config.healthMs
      const targets = this.slotList.filter(s => s !== slot && s.worker?.state === 'ready' && !s.stalled && s.worker.healthAt >= fresh)
      const t = targets[this.handoffTurn++ % Math.max(1, targets.length)]
      return t?.worker?.proc.child ?? null
    })
  }

  private stopHandoff (slot: Slot): void {
    if (slot.handoff === null) return
    slot.handoff.close()
    slot.handedOffBefore += slot.handoff.count
    slot.handoff = null
  }

  private enqueue<T> (op: () => Promise<T>): Promise<T> {
    this.pending++
    const run = this.queue.catch(() => {}).then(op).finally(() => { this.pending-- })
    this.queue = run
    return run
  }

  reload (): Promise<void> {
    return this.enqueue(() => this.rollingRestart())
  }

  private async rollingRestart (): Promise<void> {
    for (const slot of [...this.slotList]) {
      if (this.closing) return
      if (slot.closed || slot.retiring || slot.worker?.state !== 'ready') continue // a dead slot is respawned with the new code anyway
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
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) throw new FST_REUSEPORT_INVALID_OPTION('workers', 'must be an integer >= 1', received(n))
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
      slot.closed = true
      this.closeSlot(slot)
      this.updateSteering()
      this.log.error({ err }, `scale: could not add slot ${slot.index + 1}: ${(err as Error).message}`)
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
    const name = this.line(slot)
    slot.retiring = true
    if (slot.respawnTimer) clearTimeout(slot.respawnTimer)
    // A replacement starting on it would otherwise outlive the slot with its own copy of the socket.
    for (const w of slot.workers) if (w.state === 'starting') w.proc.kill('SIGKILL')
    this.updateSteering()
    this.changed(slot)
    this.log.info({ slot: slot.index }, `scale: ${name} steered out, serving what is queued on it`)
    // No new connection comes to it now. Its worker (or, without one, the
    // hand-off) accepts what is queued; handshakes already in its SYN queue
    // have no counter (TCP_INFO shows only the accept queue), so they get a
    // grace period to complete.
    const deadline = Date.now() + this.settings.handshakeGrace
    // A worker that cannot empty its queue (stuck) gets the close grace delay more, not forever.
    const giveUp = deadline + this.settings.graceMs
    const served = (): boolean => slot.worker?.state === 'ready' || slot.handoff !== null
    while (served() && (Date.now() < deadline || (this.queued(slot) > 0 && Date.now() < giveUp))) await sleep(20)
    if (slot.worker !== null) this.drainWorker(slot.worker)
    await Promise.all([...slot.workers].map(w => w.proc.exited))
    this.stopHandoff(slot)
    this.slotList.pop()
    slot.closed = true
    this.closeSlot(slot)
    this.updateSteering()
    this.log.info({ slot: slot.index }, `scale: slot ${slot.index + 1} retired, ${this.slotList.length} left`)
    this.emit('scale', this.slotList.length)
  }

  /** One sample: stalls, replacements, crash loop. */
  private tick (): void {
    if (this.closing) return
    const now = Date.now()
    const serving = this.slotList.filter(s => s.worker?.state === 'ready' && !s.retiring)
    for (const s of serving) if (now - ((s.worker as Worker).readyAt as number) >= SETTLED_MS) s.earlyDeaths = 0
    this.lastServedAt = lastServed(this.lastServedAt, now, serving.map(s => ({ readyForMs: now - ((s.worker as Worker).readyAt as number), earlyDeaths: s.earlyDeaths })))
    if (crashLooping(this.lastServedAt === now, this.lastServedAt, now, this.settings.crashLoopTimeout)) {
      this.fatal()
      return
    }
    if (this.settings.stallTimeout > 0) this.checkStalls(serving, now)
    this.checkReplacements(serving, now)
    // One read of the loads serves steering and rebalancing.
    const loads = this.loads()
    this.steerer?.update(loads, now)
    this.checkBalance(loads, now)
  }

  /** What the balancing rules see: one entry per socket index. */
  private loads (): SlotLoad[] {
    return this.slotList.map(s => ({
      eligible: s.worker?.state === 'ready' && !s.stalled && !s.retiring,
      open: s.worker?.open ?? 0,
      accepted: s.acceptedBefore + (s.worker?.accepted ?? 0)
    }))
  }

  /** A slot holding more than its share of a few long-lived connections ends some kept-alive ones (lib/shed.ts). */
  private checkBalance (loads: SlotLoad[], now: number): void {
    if (this.steerer === null) return
    const churn = this.slotList.map(s => ({ retiring: s.retiring, starting: [...s.workers].some(w => w.state === 'starting') }))
    if (!mayShed(churn, this.pending > 0)) return
    const decision = this.steerer.rebalance(loads, now)
    if (decision.slot === null) return
    const slot = this.slotList[decision.slot] as Slot
    const w = slot.worker as Worker
    this.log.info({ slot: slot.index, workerPid: w.pid, open: loads.map(l => l.open), count: decision.count },
      `${this.line(slot)}: holds ${w.open} of ${loads.reduce((n, l) => n + l.open, 0)} connections; ending ${decision.count} kept-alive at their next response`)
    const message: SupervisorMessage = { type: 'shed', count: decision.count }
    void w.proc.channel?.send(message)
  }

  private checkStalls (serving: Slot[], now: number): void {
    const { stallTimeout, stallQueue, config: { healthMs } } = this.settings
    const limits = { stallTimeout, stallQueue, healthMs }
    const healthy = new Set(serving.filter(s => !s.stalled && now - (s.worker as Worker).healthAt <= 2 * healthMs).map(s => s.index))
    for (const slot of serving) {
      const w = slot.worker as Worker
      const sample = { now, healthAt: w.healthAt, delayMs: w.delayMs, accepted: w.accepted, queued: this.queued(slot) }
      const { reason, memory } = stallReason(sample, slot.stallMemory, limits)
      slot.stallMemory = memory
      if (!slot.stalled && reason !== null) {
        if (!mayStall(slot.index, healthy)) continue
        healthy.delete(slot.index)
        slot.stalled = true
        slot.stalls++
        this.updateSteering()
        this.log.warn({ slot: slot.index, workerPid: w.pid, queued: sample.queued, reason }, `${this.line(slot)}: stalled (${reason}); steered out`)
        this.emit('stall', { slot: slot.index, pid: w.pid, reason })
        this.changed(slot)
      } else if (slot.stalled && recovered(sample, reason, healthMs)) {
        slot.stalled = false
        this.updateSteering()
        this.log.info({ slot: slot.index, workerPid: w.pid }, `${this.line(slot)}: recovered; back in rotation`)
        this.emit('recover', { slot: slot.index, pid: w.pid })
        this.changed(slot)
      }
    }
  }

  private checkReplacements (serving: Slot[], now: number): void {
    const { workerTimeout, maxMemory } = this.settings
    const candidates: Array<{ slot: number, reason: ReplaceReason, detail: string }> = []
    for (const slot of serving) {
      const w = slot.worker as Worker
      const verdict = replaceReason({ now, healthAt: w.healthAt, rss: w.rss, requests: w.requests, requestLimit: w.requestLimit }, { workerTimeout, maxMemory })
      if (verdict !== null && (verdict.reason === 'hung' || now >= slot.replaceAfter)) candidates.push({ slot: slot.index, ...verdict })
    }
    if (candidates.length === 0) return
    const busy = this.pending > 0 || this.slotList.some(s => [...s.workers].some(w => w.state === 'starting'))
    const next = nextReplacement(candidates, busy)
    if (next === null) return
    const { detail } = candidates.find(c => c.slot === next.slot && c.reason === next.reason) as { detail: string }
    const slot = this.slotList[next.slot] as Slot
    if (next.reason === 'hung') this.replaceHung(slot, detail)
    else void this.enqueue(() => this.replaceGracefully(slot, next.reason, detail)).catch(() => {})
  }

  private announce (slot: Slot, w: Worker, reason: ReplaceReason, detail: string, how: string): void {
    slot.replacements[reason]++
    this.log.warn({ slot: slot.index, workerPid: w.pid, reason, detail }, `${this.line(slot)}: replacing worker ${w.pid} (${reason}: ${detail}); ${how}`)
    this.emit('replace', { slot: slot.index, pid: w.pid, reason, detail })
  }

  /**
   * A hung worker cannot drain: kill it, and start its replacement on the
   * same fds at once. The slot stays out of rotation meanwhile; what is
   * queued on it is handed to the other workers, then to the replacement.
   * Only what the hung worker had accepted itself is lost.
   */
  private replaceHung (slot: Slot, detail: string): void {
    const w = slot.worker as Worker
    this.announce(slot, w, 'hung', detail, 'killed, its queue waits for the next worker')
    this.release(slot)
    slot.orphaned = true
    w.state = 'draining'
    w.proc.kill('SIGKILL')
    slot.stalled = false
    this.updateSteering()
    this.changed(slot)
    this.startHandoff(slot)
    this.respawn(slot)
  }

  /** Past --max-memory or --max-requests: the new worker becomes ready, then the old one drains. */
  private async replaceGracefully (slot: Slot, reason: ReplaceReason, detail: string): Promise<void> {
    const old = slot.worker
    if (old === null || old.state !== 'ready' || slot.retiring || slot.closed || this.closing) return
    this.announce(slot, old, reason, detail, 'draining it once the new one is ready')
    try {
      const next = await this.spawnReady(slot)
      slot.restarts++
      this.log.info({ slot: slot.index, workerPid: next.pid, oldPid: old.pid, reason }, `${this.line(slot)}: worker ${next.pid} ready, draining ${old.pid} (${reason})`)
    } catch (err) {
      slot.replaceAfter = Date.now() + REPLACE_RETRY_MS
      this.log.error({ slot: slot.index, err, reason }, `${this.line(slot)}: replacement failed: ${(err as Error).message}; keeping worker ${old.pid}`)
    }
  }

  private fatal (): void {
    const lastExit = this.slotList.map(s => s.lastExit).find(e => e !== null) ?? 'none'
    const err = new FST_REUSEPORT_CRASH_LOOP(this.settings.crashLoopTimeout, lastExit)
    this.log.fatal({ err }, err.message)
    this.emit('fatal', err)
    void this.close()
  }

  close ({ drainDelay = 0 }: { drainDelay?: number } = {}): Promise<void> {
    return this.shutdown(drainDelay, false)
  }

  /** quiet: a failed start closes without a word, so its caller's one error line is all there is. */
  shutdown (drainDelay: number, quiet: boolean): Promise<void> {
    this.closed ??= this.doShutdown(drainDelay, quiet)
    return this.closed
  }

  private async doShutdown (drainDelay: number, quiet: boolean): Promise<void> {
    this.closing = true
    if (this.ticker) clearInterval(this.ticker)
    if (this.reaper) clearInterval(this.reaper)
    for (const s of this.slotList) if (s.respawnTimer) clearTimeout(s.respawnTimer)
    if (drainDelay > 0) {
      this.log.info(`shutdown: serving for ${drainDelay} ms more (drain delay)`)
      await sleep(drainDelay)
    }
    if (!quiet) this.log.info(`shutdown: draining ${this.pids().length} workers`)
    for (const s of this.slotList) this.stopHandoff(s)
    for (const w of this.allWorkers()) {
      // A worker still starting serves nothing yet, and listens for no drain message.
      if (w.state === 'starting') w.proc.kill('SIGKILL')
      else if (w.state === 'ready') this.drainWorker(w)
    }
    await Promise.all([...this.allWorkers()].map(w => w.proc.exited))
    for (const s of this.slotList) this.closeSlot(s)
    if (this.metrics) {
      const m = this.metrics
      const closed = new Promise(resolve => m.close(resolve))
      // A client still sending its headers would hold close() up.
      m.closeAllConnections()
      await closed
    }
    // The workers' last lines, still on their way through the forwarders.
    await Promise.all([this.stdout.ended(), this.stderr.ended()])
    process.off('exit', this.killAll)
    if (!quiet) this.log.info('shutdown: done')
    this.emit('close')
  }

  private closeSlot (slot: Slot): void {
    if (this.binding !== null) closeListeners(this.binding, slot.listeners)
  }

  /** Steers new connections (DESIGN.md, "Steering"; lib/steerer.ts). */
  private updateSteering (): void {
    if (!this.closing) this.steerer?.update(this.loads(), Date.now())
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

