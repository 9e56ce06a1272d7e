// One worker's life: spawned on its slot's fds, ready (it now serves the
// slot), draining (replaced, retired, shut down), exited. Its exit goes to
// the recovery (lib/supervisor/recovery.ts) whatever the reason.
import { FST_REUSEPORT_PROTOCOL, FST_REUSEPORT_READY_TIMEOUT, FST_REUSEPORT_WORKER_FAILED, reviveError } from '../common/errors'
import { isFatalMessage, isWorkerMessage, protocolAccepted, protocolMismatch, type SupervisorMessage } from '../common/messages'
import type { Context } from './context'
import { createLineForwarder, type LineForwarder } from './logs'
import { silentMs } from '../common/cadence'
import { freshStallMemory, hung, requestLimit } from './policy'
import type { Slot, Worker } from './slot'
import type { Exit, Spawner } from './spawn'

export function describeExit ({ code, signal, error }: Exit): string {
  if (error !== null) return `spawn error ${(error as NodeJS.ErrnoException).code ?? error.message}`
  return signal !== null ? `signal ${signal}` : `code ${code}`
}

export class Lifecycle {
  /** Each worker writes to pipes of its own; only whole lines reach ours (made with the first pipe). */
  private output: { stdout: LineForwarder, stderr: LineForwarder } | null = null

  constructor (
    private readonly ctx: Context,
    private readonly spawner: Spawner,
    private readonly onExit: (worker: Worker, exit: Exit) => void,
    /** It said it crashed: an uncaught exception, a graceful exit on its way (lib/worker/crash.ts). */
    private readonly onCrashing: (worker: Worker) => void,
    /** A worker reported busy: the monitor ticks fast again. */
    private readonly onBusy: () => void = () => {}
  ) {}

  /** Starts a worker on the slot's fds and resolves once it serves; it is then the slot's worker. */
  async spawnReady (slot: Slot): Promise<Worker> {
    const worker = this.spawn(slot)
    try {
      await this.waitReady(worker)
      // A slot retired, or a shutdown begun, while it booted: it must not serve a socket nobody owns.
      if (!this.ctx.table.live(slot)) throw new FST_REUSEPORT_WORKER_FAILED(slot.index + 1, 'its slot was retired while it started')
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
    const now = this.ctx.clock.now()
    slot.worker = worker
    worker.state = 'ready'
    worker.readyAt = worker.healthAt = now
    slot.stalled = false
    slot.stallMemory = freshStallMemory()
    // Not lastServedAt: becoming ready is not serving (the crash-loop rule, lastServed() in policy.ts).
    slot.orphaned = false
    this.ctx.table.changed(slot)
    if (previous !== null && previous.state === 'ready') this.drain(previous)
  }

  /** The slot's worker stops being its worker (replaced, hung, exited). */
  release (slot: Slot): void {
    const w = slot.worker
    if (w === null) return
    slot.acceptedBefore += w.accepted
    slot.tlsBefore.resumed += w.tlsResumed
    slot.tlsBefore.full += w.tlsFull
    slot.worker = null
  }

  private spawn (slot: Slot): Worker {
    const { settings, clock, sockets } = this.ctx
    const { config, preload, maxRequests, maxRequestsJitter } = settings
    const proc = this.spawner({ listeners: slot.listeners, config: { ...config, slot: slot.index }, preload, viaCluster: sockets.balancer === 'cluster' })
    const { stdout, stderr } = proc.child ?? {}
    if (stdout || stderr) this.output ??= { stdout: createLineForwarder(process.stdout), stderr: createLineForwarder(process.stderr) }
    if (stdout) this.output?.stdout.add(stdout)
    if (stderr) this.output?.stderr.add(stderr)
    // Before it listens, its TLS server (if any) waits for these.
    void proc.channel?.send(this.ctx.tickets.message())
    const now = clock.now()
    const worker: Worker = {
      proc,
      pid: proc.pid,
      slot,
      state: 'starting',
      readyAt: null,
      addresses: [],
      healthAt: now,
      delayMs: 0,
      accepted: 0,
      open: 0,
      rss: 0,
      requests: 0,
      tlsResumed: 0,
      tlsFull: 0,
      reportMs: config.healthMs,
      requestLimit: requestLimit(maxRequests, maxRequestsJitter, Math.random()),
      error: null
    }
    slot.workers.add(worker)
    proc.channel?.on('message', (m: unknown) => {
      if (isFatalMessage(m)) worker.error = reviveError(m.error)
      if (!isWorkerMessage(m)) return
      this.ctx.tickets.observe(m)
      if (m.type === 'crashing') this.onCrashing(worker)
      if (m.type !== 'health') return
      worker.healthAt = clock.now()
      worker.delayMs = m.delayMs
      worker.accepted = m.accepted
      worker.open = m.open
      worker.rss = m.rss
      worker.requests = m.requests
      worker.tlsResumed = m.tlsResumed ?? 0
      worker.tlsFull = m.tlsFull ?? 0
      // A protocol 1 worker announces no cadence: it reports every healthMs.
      worker.reportMs = m.nextMs ?? config.healthMs
      if (worker.reportMs <= config.healthMs) this.onBusy()
    })
    void proc.exited.then(exit => {
      slot.workers.delete(worker)
      this.onExit(worker, exit)
    })
    return worker
  }

  private waitReady (worker: Worker): Promise<void> {
    const { settings: { readyTimeout }, clock } = this.ctx
    const n = worker.slot.index + 1
    return new Promise((resolve, reject) => {
      let settled = false
      const timer = clock.setTimeout(() => finish(new FST_REUSEPORT_READY_TIMEOUT(n, readyTimeout)), readyTimeout)
      const onMessage = (m: unknown): void => {
        if (!isWorkerMessage(m)) return
        if (m.type === 'ready') {
          worker.addresses = m.addresses
          worker.protocol = m.protocol ?? 1
          // A worker from a dist/ too far apart: one clear line, not a fleet that misreads itself.
          finish(protocolAccepted(m.protocol) ? null : new FST_REUSEPORT_PROTOCOL(protocolMismatch(`worker ${worker.pid} for slot ${n}`, m.protocol)))
        } else if (m.type === 'error') {
          // The 'fatal' message before it carried the error itself: Node's text, with the location of a syntax error.
          finish(new FST_REUSEPORT_WORKER_FAILED(n, `${m.message} (${m.code})`, ...(worker.error ? [{ cause: worker.error }] : [])))
        }
      }
      const finish = (err: Error | null): void => {
        if (settled) return
        settled = true
        clock.clearTimeout(timer)
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

  /** Tells a worker to drain; one that cannot (hung) is killed, and one that takes past the grace too. */
  drain (worker: Worker): void {
    if (worker.state === 'exited') return
    const { settings, clock, log, table } = this.ctx
    const wasReady = worker.state === 'ready'
    worker.state = 'draining'
    const now = clock.now()
    if (wasReady && hung(silentMs(now, worker.healthAt, worker.reportMs, settings.config.healthMs), settings.stallTimeout)) {
      log.warn({ slot: worker.slot.index, workerPid: worker.pid }, `${table.line(worker.slot)}: worker ${worker.pid} is hung (no health report for ${now - worker.healthAt} ms): killed instead of drained`)
      worker.proc.kill('SIGKILL')
      return
    }
    const message: SupervisorMessage = { type: 'drain' }
    void worker.proc.channel?.send(message)
    // The worker gives up on its own at graceMs; this is for one that cannot.
    killAfter(this.ctx, worker, settings.closeGraceDelay)
  }

  /** A worker's partial last lines on its way through the forwarders (an in-place upgrade carries them). */
  held (worker: Worker): { stdout: Buffer, stderr: Buffer } {
    const { stdout, stderr } = worker.proc.child ?? {}
    const none = Buffer.alloc(0)
    return { stdout: stdout && this.output ? this.output.stdout.held(stdout) : none, stderr: stderr && this.output ? this.output.stderr.held(stderr) : none }
  }

  /** Resolves once the workers' last lines, still on their way through the forwarders, are out. */
  async flushed (): Promise<void> {
    if (this.output !== null) await Promise.all([this.output.stdout.ended(), this.output.stderr.ended()])
  }
}

/** A worker that has not exited by `graceMs` + 1 s (its own deadline, and a margin) is killed. */
export function killAfter ({ clock }: Context, worker: Worker, graceMs: number): void {
  const kill = clock.setTimeout(() => worker.proc.kill('SIGKILL'), graceMs + 1000)
  void worker.proc.exited.then(() => clock.clearTimeout(kill))
}
