// The crash path, as one unit: a worker that was serving exits (a crash, a
// kill, an OOM) or hangs. Its slot keeps its socket, so what is queued on it
// waits: handed to the other workers meanwhile, then served by the
// replacement, which starts at once when the dead worker had served, or
// after a backoff when its slot keeps failing.
import type { Context } from './context'
import { describeExit, killAfter, type Lifecycle } from './lifecycle'
import { failuresAfterExit, respawnDelay, SETTLED_MS, type ReplaceReason } from './policy'
import type { Slot, Worker } from './slot'
import type { Exit } from './spawn'

export class Recovery {
  lifecycle!: Lifecycle

  constructor (private readonly ctx: Context) {}

  /** Every worker exit comes here; only the exit of a slot's serving worker starts a recovery. */
  readonly onExit = (worker: Worker, exit: Exit): void => {
    const { table, log, emit } = this.ctx
    const slot = worker.slot
    const wasServing = slot.worker === worker && worker.state === 'ready'
    const wasDraining = worker.state === 'draining'
    worker.state = 'exited'
    const err = worker.error
    const crashed = worker.crashedAt !== undefined
    // A crashed worker's error was logged when it said so (onCrashing).
    if (wasDraining && !crashed && (err !== null || (exit.code !== 0 && exit.signal === null))) {
      log.error({ slot: slot.index, workerPid: worker.pid, code: exit.code, signal: exit.signal, err }, `${table.line(slot)}: draining worker ${worker.pid} exited with ${describeExit(exit)}${err ? `: ${err.message}` : ''}`)
    }
    const event = { slot: slot.index, pid: worker.pid, code: exit.code, signal: exit.signal, error: err }
    if (crashed) emit('exit', event)
    if (wasServing && this.lost(worker, `exited with ${describeExit(exit)}`, describeExit(exit), exit)) emit('exit', event)
  }

  /**
   * An uncaught exception: the worker stops accepting and answers what it has
   * in flight (lib/worker/crash.ts). Its slot is treated as lost now, so the
   * replacement starts without waiting for the exit.
   */
  readonly onCrashing = (worker: Worker): void => {
    const { clock, settings } = this.ctx
    if (worker.slot.worker !== worker || worker.state !== 'ready') return
    worker.crashedAt = clock.now()
    worker.state = 'draining'
    killAfter(this.ctx, worker, settings.crashGrace)
    this.lost(worker, `crashed, answering what it has for up to ${settings.crashGrace} ms`, `uncaught ${worker.error?.name ?? 'exception'}`, { code: null, signal: null })
  }

  /** The slot's serving worker is gone or going: out of rotation, its queue handed over, a replacement on its way. */
  private lost (worker: Worker, what: string, lastExit: string, exit: { code: number | null, signal: NodeJS.Signals | null }): boolean {
    const { table, log, clock, settings } = this.ctx
    const slot = worker.slot
    const err = worker.error
    const now = clock.now()
    this.orphan(slot, now + 2 * settings.config.healthMs)
    slot.lastExit = lastExit
    table.changed(slot)
    if (!table.live(slot)) return false
    // Its socket lives on here: connections queued on it wait for the replacement, or are handed over.
    const readyFor = worker.readyAt === null ? null : now - worker.readyAt
    slot.failures = failuresAfterExit(slot.failures, readyFor, worker.accepted)
    if (readyFor === null || readyFor < SETTLED_MS) slot.earlyDeaths++
    const delay = respawnDelay(slot.failures)
    log.error({ slot: slot.index, workerPid: worker.pid, code: exit.code, signal: exit.signal, ...(err ? { err } : {}) },
      `${table.line(slot)}: worker ${worker.pid} ${what}${err ? `: ${err.message}` : ''}; respawning ${delay > 0 ? `in ${delay} ms` : 'now'}`)
    // The hand-off waits until handoffAfter: look again then.
    clock.setTimeout(() => table.changed(), 2 * settings.config.healthMs).unref?.()
    this.scheduleRespawn(slot, delay)
    return true
  }

  /** The slot has lost its worker: out of rotation, its queue handed over from `handoffAfter` on. */
  private orphan (slot: Slot, handoffAfter: number): void {
    this.lifecycle.release(slot)
    slot.orphaned = true
    slot.handoffAfter = handoffAfter
    slot.stalled = false
  }

  /**
   * A hung worker cannot drain: kill it, and start its replacement on the
   * same fds at once. The slot stays out of rotation meanwhile; what is
   * queued on it is handed to the other workers, then to the replacement.
   * Only what the hung worker had accepted itself is lost.
   */
  replaceHung (slot: Slot, detail: string): void {
    const w = slot.worker
    if (w === null) return
    announceReplacement(this.ctx, slot, 'hung', detail, 'killed, its queue waits for the next worker')
    this.orphan(slot, this.ctx.clock.now())
    w.state = 'draining'
    w.proc.kill('SIGKILL')
    this.ctx.table.changed(slot)
    this.respawn(slot)
  }

  scheduleRespawn (slot: Slot, delay: number): void {
    const { clock } = this.ctx
    clock.clearTimeout(slot.respawnTimer)
    slot.respawnTimer = clock.setTimeout(() => { slot.respawnTimer = null; this.respawn(slot) }, delay)
  }

  private respawn (slot: Slot): void {
    const { table, log, emit } = this.ctx
    if (!table.live(slot) || slot.worker !== null || table.starting(slot)) return
    slot.restarts++
    const ready = this.lifecycle.spawnReady(slot)
    table.changed(slot)
    ready.then(w => {
      log.info({ slot: slot.index, workerPid: w.pid }, `${table.line(slot)}: worker ${w.pid} ready`)
      emit('respawn', { slot: slot.index, pid: w.pid })
    }, (err: Error) => {
      if (!table.live(slot)) return
      slot.failures++
      const delay = respawnDelay(slot.failures)
      log.error({ slot: slot.index, err }, `${table.line(slot)}: ${err.message}; retrying in ${delay} ms`)
      table.changed(slot)
      this.scheduleRespawn(slot, delay)
    })
  }
}

/** One line and one 'replace' event for every replacement the self-healing rules order. */
export function announceReplacement ({ table, log, emit }: Context, slot: Slot, reason: ReplaceReason, detail: string, how: string): void {
  const w = slot.worker
  if (w === null) return
  slot.replacements[reason]++
  log.warn({ slot: slot.index, workerPid: w.pid, reason, detail }, `${table.line(slot)}: replacing worker ${w.pid} (${reason}: ${detail}); ${how}`)
  emit('replace', { slot: slot.index, pid: w.pid, reason, detail })
}
