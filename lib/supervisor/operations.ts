// What is asked of the supervisor (reload, scale) and the graceful
// replacements its rules call for: one at a time, in order, so that capacity
// never drops below N-1 and no two operations fight over a slot.
import { FST_REUSEPORT_INVALID_OPTION } from '../common/errors'
import { received } from '../common/validate'
import { sleep } from './clock'
import type { Context } from './context'
import type { Lifecycle } from './lifecycle'
import { announceReplacement } from './recovery'
import type { ReplaceReason } from './policy'
import type { Slot } from './slot'

// A replacement that failed to boot is not tried again on that slot sooner.
const REPLACE_RETRY_MS = 10000

export class Operations {
  private queue: Promise<unknown> = Promise.resolve()
  /** Operations queued or running. */
  pending = 0

  constructor (private readonly ctx: Context, private readonly lifecycle: Lifecycle) {}

  private enqueue<T> (op: () => Promise<T>): Promise<T> {
    this.pending++
    const run = this.queue.catch(() => {}).then(op).finally(() => { this.pending-- })
    this.queue = run
    return run
  }

  /** Runs op alone: after what is queued, before what comes next (an in-place upgrade). */
  exclusive<T> (op: () => Promise<T>): Promise<T> {
    return this.enqueue(op)
  }

  /** Rolling restart: each slot gets a new worker, ready before the old one drains. */
  reload (): Promise<void> {
    return this.enqueue(async () => {
      const { table, log, emit } = this.ctx
      for (const slot of [...table.slots]) {
        if (table.closing) return
        // A dead slot is respawned with the new code anyway.
        if (!table.live(slot) || slot.worker?.state !== 'ready') continue
        const old = slot.worker
        try {
          const next = await this.lifecycle.spawnReady(slot)
          slot.restarts++
          log.info({ slot: slot.index, workerPid: next.pid, oldPid: old.pid }, `reload: ${table.line(slot)}: worker ${next.pid} ready, draining ${old.pid}`)
        } catch (err) {
          log.error({ slot: slot.index, err }, `reload: ${table.line(slot)}: ${(err as Error).message}; keeping worker ${old.pid}, reload stopped`)
          throw err
        }
      }
      log.info(`reload: all ${table.slots.length} slots replaced`)
      emit('reloaded')
    })
  }

  scale (n: number): Promise<void> {
    return this.enqueue(async () => {
      const { table } = this.ctx
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) throw new FST_REUSEPORT_INVALID_OPTION('workers', 'must be an integer >= 1', received(n))
      while (!table.closing && table.slots.length < n) await this.scaleUp()
      while (!table.closing && table.slots.length > n) await this.retireLast()
    })
  }

  private async scaleUp (): Promise<void> {
    const { table, sockets, log, emit } = this.ctx
    const slot = table.add(sockets.open(table.slots.length))
    // Out of rotation until its worker is ready.
    table.changed(slot)
    try {
      const w = await this.lifecycle.spawnReady(slot)
      log.info({ slot: slot.index, workerPid: w.pid }, `scale: ${table.line(slot)} added, worker ${w.pid}`)
      emit('scale', table.slots.length)
    } catch (err) {
      table.removeLast()
      sockets.close(slot.listeners)
      table.changed(slot)
      log.error({ err }, `scale: could not add slot ${slot.index + 1}: ${(err as Error).message}`)
      throw err
    }
  }

  /**
   * Retires the last slot: only the last, because closing a socket moves the
   * group's last socket into its index, and the steering program must keep
   * meaning what it says for the others (socket(7), SO_ATTACH_REUSEPORT_CBPF).
   */
  private async retireLast (): Promise<void> {
    const { table, sockets, log, emit, clock, settings } = this.ctx
    const slot = table.slots[table.slots.length - 1] as Slot
    if (table.slots.length <= 1) throw new FST_REUSEPORT_INVALID_OPTION('workers', 'cannot retire the last slot', 0)
    const name = table.line(slot)
    slot.retiring = true
    clock.clearTimeout(slot.respawnTimer)
    // A replacement starting on it would otherwise outlive the slot with its own copy of the socket.
    for (const w of slot.workers) if (w.state === 'starting') w.proc.kill('SIGKILL')
    table.changed(slot)
    log.info({ slot: slot.index }, `scale: ${name} steered out, serving what is queued on it`)
    // No new connection comes to it now. Its worker (or, without one, the
    // hand-off) accepts what is queued; handshakes already in its SYN queue
    // have no counter (TCP_INFO shows only the accept queue), so they get a
    // grace period to complete.
    const deadline = clock.now() + settings.handshakeGrace
    // A worker that cannot empty its queue (stuck) gets the close grace delay more, not forever.
    const giveUp = deadline + settings.closeGraceDelay
    const served = (): boolean => slot.worker?.state === 'ready' || slot.handoff !== null
    while (served() && (clock.now() < deadline || (sockets.queued(slot.listeners) > 0 && clock.now() < giveUp))) await sleep(clock, 20)
    if (slot.worker !== null) this.lifecycle.drain(slot.worker)
    await Promise.all([...slot.workers].map(w => w.proc.exited))
    table.removeLast()
    sockets.close(slot.listeners)
    // Out of the table now: its hand-off ends, and the program is rebuilt for the rest.
    table.changed(slot)
    log.info({ slot: slot.index }, `scale: slot ${slot.index + 1} retired, ${table.slots.length} left`)
    emit('scale', table.slots.length)
  }

  /** Past --max-memory or --max-requests: the new worker becomes ready, then the old one drains. */
  replaceGracefully (slot: Slot, reason: ReplaceReason, detail: string): Promise<void> {
    return this.enqueue(async () => {
      const { table, log, clock } = this.ctx
      const old = slot.worker
      if (old === null || old.state !== 'ready' || !table.live(slot)) return
      announceReplacement(this.ctx, slot, reason, detail, 'draining it once the new one is ready')
      try {
        const next = await this.lifecycle.spawnReady(slot)
        slot.restarts++
        log.info({ slot: slot.index, workerPid: next.pid, oldPid: old.pid, reason }, `${table.line(slot)}: worker ${next.pid} ready, draining ${old.pid} (${reason})`)
      } catch (err) {
        slot.replaceAfter = clock.now() + REPLACE_RETRY_MS
        log.error({ slot: slot.index, err, reason }, `${table.line(slot)}: replacement failed: ${(err as Error).message}; keeping worker ${old.pid}`)
      }
    })
  }
}
