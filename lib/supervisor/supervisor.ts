// The supervisor: owns one listening socket per slot and runs one worker per
// slot on it. This file only wires the parts, each with one job:
//   table.ts       the slots and their workers, with the one change hook
//   sockets.ts     where connections come from (reuseport group, or cluster)
//   lifecycle.ts   one worker's life: spawn, ready, drain
//   recovery.ts    the crash path: a serving worker exits or hangs
//   monitor.ts     each tick: sample, decide (pure), execute
//   operations.ts  reload, scale and graceful replacements, one at a time
//   upgrade.ts     SIGUSR2: this program replaced in place (adopt.ts: the new half)
import { EventEmitter } from 'node:events'
import type http from 'node:http'
import type { Logger } from 'pino'
import { FST_REUSEPORT_CRASH_LOOP } from '../common/errors'
import { adoptedHeld, adoptedOutputEnded, restoreCounters } from './adopt'
import { sleep, type Clock, type Timer } from './clock'
import type { Context, Settings } from './context'
import type { SlotInfo, SupervisorHandle, SupervisorSnapshot } from './handle'
import { Lifecycle } from './lifecycle'
import { serveMetrics } from './metrics'
import { Monitor } from './monitor'
import { Operations } from './operations'
import { freshHealth, handoffWanted } from './policy'
import { Recovery } from './recovery'
import { slotInfo, slotSnapshot, type Slot } from './slot'
import type { SlotSockets } from './sockets'
import type { Spawner } from './spawn'
import { SlotTable } from './table'
import { TicketKeeper } from './ticket-keeper'

/** What systemd is told (lib/supervisor/systemd.ts); nothing without $NOTIFY_SOCKET. */
export interface ServiceManager {
  ready: (status: string) => void
  reloading: () => void
  stopping: () => void
  store: (slot: number, fds: number[]) => void
  forget: (slot: number) => void
}

const NO_SERVICE_MANAGER: ServiceManager = { ready: () => {}, reloading: () => {}, stopping: () => {}, store: () => {}, forget: () => {} }
import { Upgrader } from './upgrade'
import type { CarriedState } from './upgrade-state'

export interface SupervisorDeps {
  settings: Settings
  log: Logger
  clock: Clock
  sockets: SlotSockets
  spawner: Spawner
  notifier?: ServiceManager
}

export class Supervisor extends EventEmitter implements SupervisorHandle {
  metricsPort: number | null = null
  private readonly ctx: Context
  private readonly table: SlotTable
  private readonly lifecycle: Lifecycle
  private readonly operations: Operations
  private readonly monitor: Monitor
  private readonly upgrader: Upgrader
  private reaper: Timer | null = null
  private metrics: http.Server | null = null
  private closed: Promise<void> | null = null
  private handoffTurn = 0
  private readonly notifier: ServiceManager

  constructor ({ settings, log, clock, sockets, spawner, notifier = NO_SERVICE_MANAGER }: SupervisorDeps) {
    super()
    this.notifier = notifier
    this.table = new SlotTable(clock.now(), slot => this.onChange(slot))
    // First: a key file that cannot be used stops the start here.
    const tickets = new TicketKeeper({ rotationMs: settings.tlsTicketRotation, file: settings.tlsTicketKeys, log, broadcast: m => { for (const w of this.table.workers()) void w.proc.channel?.send(m) } })
    this.ctx = { settings, log, clock, sockets, table: this.table, emit: (event, ...args) => { this.emit(event, ...args) }, tickets }
    const recovery = new Recovery(this.ctx)
    this.lifecycle = new Lifecycle(this.ctx, spawner, recovery.onExit, recovery.onCrashing, () => this.monitor.wake())
    recovery.lifecycle = this.lifecycle
    this.operations = new Operations(this.ctx, this.lifecycle)
    this.monitor = new Monitor(this.ctx, {
      replaceHung: (slot, detail) => recovery.replaceHung(slot, detail),
      replaceGracefully: (slot, reason, detail) => { void this.operations.replaceGracefully(slot, reason, detail) },
      crashLoop: () => this.crashLoop(),
      pending: () => this.operations.pending
    })
    this.upgrader = new Upgrader(this.ctx, this.operations, () => this.metrics, w => adoptedHeld(w.proc) ?? this.lifecycle.held(w))
    // Nobody must outlive us, even on process.exit() from a second signal.
    process.once('exit', this.killAll)
  }

  get port (): number { return this.ctx.sockets.port }
  /** The start line on TLS session resumption, once the workers said whether they serve TLS. */
  logTls (): void { this.ctx.tickets.logStarted() }
  get addresses (): string[] { return this.ctx.sockets.addresses }

  private readonly killAll = (): void => { for (const w of this.table.workers()) w.proc.kill('SIGKILL') }

  /** Opens the slots in slot order (socket i of each reuseport group is slot i) and starts their workers. */
  async open (n: number): Promise<void> {
    const { sockets, clock } = this.ctx
    for (let i = 0; i < n; i++) this.table.add(sockets.open(i))
    const ready = await Promise.all(this.table.slots.map(s => this.lifecycle.spawnReady(s)))
    sockets.adopt(ready[0]?.addresses ?? [])
    this.table.lastServedAt = clock.now()
    this.ctx.tickets.start()
    this.monitor.start()
    // As PID 1 (a container's entrypoint), orphaned processes are ours to reap.
    if (process.pid === 1) this.reap()
  }

  private reap (): void {
    this.ctx.sockets.reap([...this.table.workers()].map(w => w.pid))
    if (!this.table.closing) this.reaper = this.ctx.clock.setTimeout(() => this.reap(), 1000)
    this.reaper?.unref?.()
  }

  /** After an in-place upgrade: the carried slots and their adopted workers (lib/supervisor/adopt.ts). */
  async restore (state: CarriedState): Promise<void> {
    // Before any worker starts: new ones get the keys the adopted ones hold.
    this.ctx.tickets.adopt(state.tickets)
    await this.open(state.slots.length)
    restoreCounters(this.table.slots, state, this.ctx.clock.now())
  }

  /** The adopted workers onto the new code, one slot at a time, as SIGHUP does. */
  rollAdopted (state: CarriedState): void { this.upgrader.roll(state) }

  /** In place (lib/supervisor/upgrade.ts); systemd hears RELOADING=1, and READY=1 from the new program, or again from this one if it failed. */
  upgrade (): Promise<void> {
    this.notifier.reloading()
    return this.upgrader.upgrade().catch((err: unknown) => {
      if (!this.table.closing) this.notifier.ready(`${this.table.slots.length} workers serving, upgrade failed`)
      throw err
    })
  }

  /** fd: the metrics listener carried over an in-place upgrade. */
  async serveMetrics (port: number, host: string, fd?: number): Promise<void> {
    this.metrics = await serveMetrics(port, host, () => this.slots(), { onError: err => this.ctx.log.warn({ err }, 'metrics: accept failed'), ...(fd !== undefined ? { fd } : {}) })
    const address = this.metrics.address()
    this.metricsPort = typeof address === 'object' && address !== null ? address.port : port
  }

  pids (): number[] { return this.table.pids() }

  slots (): SlotInfo[] { return this.table.slots.map(s => this.info(s)) }

  snapshot (): SupervisorSnapshot {
    const { sockets } = this.ctx
    return {
      balancer: sockets.balancer,
      port: sockets.port,
      addresses: [...sockets.addresses],
      lastServedAt: this.table.lastServedAt,
      closing: this.table.closing,
      slots: this.table.slots.map(slotSnapshot)
    }
  }

  reload (): Promise<void> {
    this.notifier.reloading()
    // A key file is read again before the new workers start.
    this.ctx.tickets.reload()
    return this.operations.reload().finally(() => { if (!this.table.closing) this.notifier.ready(`${this.table.slots.length} workers serving, reloaded`) })
  }

  /** Added slots go into systemd's fd store, retired ones leave it. */
  async scale (n: number): Promise<void> {
    const before = this.table.slots.length
    try {
      await this.operations.scale(n)
    } finally {
      const after = this.table.slots
      for (const s of after.slice(before)) this.notifier.store(s.index, s.listeners.map(l => l.fd))
      for (let i = after.length; i < before; i++) this.notifier.forget(i)
    }
  }

  private info (s: Slot): SlotInfo {
    return slotInfo(s, this.ctx.sockets.queued(s.listeners))
  }

  /** The one change hook: re-steer, reconcile the hand-offs, tell listeners. */
  private onChange (slot: Slot | null): void {
    const { table, sockets, clock } = this.ctx
    const now = clock.now()
    if (!table.closing) sockets.steer(table.loads(), now)
    this.reconcileHandoffs(slot, now)
    if (slot !== null && !slot.closed) this.emit('slot', this.info(slot))
  }

  /** While a slot has no worker, live workers of other slots serve its queue (lib/supervisor/handoff.ts). */
  private reconcileHandoffs (changed: Slot | null, now: number): void {
    const { table, sockets, log, settings } = this.ctx
    const othersServe = table.pids().length > 0
    const slots = changed !== null && !table.slots.includes(changed) ? [...table.slots, changed] : table.slots
    for (const s of slots) {
      const want = handoffWanted({ orphaned: s.orphaned, hasWorker: s.worker !== null, closed: s.closed, retiring: s.retiring, active: s.handoff !== null, handoffAfter: s.handoffAfter }, now, othersServe, table.closing)
      if (want && s.handoff === null) {
        s.handoff = sockets.handoff(s.listeners, () => {
          const at = this.ctx.clock.now()
          const targets = table.slots.filter(o => o !== s && o.worker?.state === 'ready' && !o.stalled && freshHealth(at, o.worker.healthAt, o.worker.reportMs, settings.config.healthMs))
          return targets[this.handoffTurn++ % Math.max(1, targets.length)]?.worker?.proc.child ?? null
        })
        if (s.handoff !== null) log.info({ slot: s.index }, `${table.line(s)}: no worker; its queue is handed to the other workers until one is ready`)
      } else if (!want && s.handoff !== null) {
        s.handoff.close()
        s.handedOffBefore += s.handoff.count
        s.handoff = null
      }
    }
  }

  private crashLoop (): void {
    const lastExit = this.table.slots.map(s => s.lastExit).find(e => e !== null) ?? 'none'
    const err = new FST_REUSEPORT_CRASH_LOOP(this.ctx.settings.crashLoopTimeout, lastExit)
    this.ctx.log.fatal({ err }, err.message)
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
    const { table, clock, log, sockets } = this.ctx
    table.closing = true
    if (!quiet) this.notifier.stopping()
    this.upgrader.abort()
    this.monitor.stop()
    this.ctx.tickets.stop()
    clock.clearTimeout(this.reaper)
    for (const s of table.slots) clock.clearTimeout(s.respawnTimer)
    if (drainDelay > 0) {
      log.info(`shutdown: serving for ${drainDelay} ms more (drain delay)`)
      await sleep(clock, drainDelay)
    }
    if (!quiet) log.info(`shutdown: draining ${table.pids().length} workers`)
    // Closing: every hand-off ends.
    table.changed()
    for (const w of table.workers()) {
      // A worker still starting serves nothing yet, and listens for no drain message.
      if (w.state === 'starting') w.proc.kill('SIGKILL')
      else if (w.state === 'ready') this.lifecycle.drain(w)
    }
    await Promise.all([...table.workers()].map(w => w.proc.exited))
    for (const s of table.slots) sockets.close(s.listeners)
    if (this.metrics) {
      const m = this.metrics
      const closed = new Promise(resolve => m.close(resolve))
      // A client still sending its headers would hold close() up.
      m.closeAllConnections()
      await closed
    }
    // The workers' last lines, still on their way through the forwarders.
    await Promise.all([this.lifecycle.flushed(), adoptedOutputEnded()])
    process.off('exit', this.killAll)
    if (!quiet) log.info('shutdown: done')
    this.emit('close')
  }
}
