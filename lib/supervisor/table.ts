// The slot table: the one truth of which slots exist, which worker serves
// each, and which processes were started for them. Every state change ends
// in changed(): one hook re-steers, reconciles the hand-offs and emits,
// instead of each caller remembering which of those it owes.
import type { Listener } from '../common/listener'
import type { SlotLoad } from './balance'
import { newSlot, type Slot, type Worker } from './slot'

export class SlotTable {
  readonly slots: Slot[] = []
  /** Shutting down: nothing is respawned, replaced or steered any more. */
  closing = false
  /** The last moment some slot served (the crash-loop rule). */
  lastServedAt: number

  constructor (now: number, private readonly hook: (slot: Slot | null) => void) {
    this.lastServedAt = now
  }

  add (listeners: Listener[]): Slot {
    const slot = newSlot(this.slots.length, listeners)
    this.slots.push(slot)
    return slot
  }

  /** Takes the last slot out of the table; its sockets are the caller's to close. */
  removeLast (): void {
    const slot = this.slots.pop()
    if (slot !== undefined) slot.closed = true
  }

  /** Whether the slot still wants workers: not retired, retiring or shutting down. */
  live (slot: Slot): boolean {
    return !this.closing && !slot.retiring && !slot.closed
  }

  * workers (): Generator<Worker> {
    for (const s of this.slots) yield * s.workers
  }

  /** Slots with a ready worker, not being retired. */
  serving (): Slot[] {
    return this.slots.filter(s => s.worker?.state === 'ready' && !s.retiring)
  }

  pids (): number[] {
    return this.slots.flatMap(s => s.worker?.state === 'ready' ? [s.worker.pid] : [])
  }

  /** A worker is starting somewhere (or on `slot`). */
  starting (slot?: Slot): boolean {
    for (const w of slot === undefined ? this.workers() : slot.workers) if (w.state === 'starting') return true
    return false
  }

  /** What the balancing rules see: one entry per socket index. */
  loads (): SlotLoad[] {
    return this.slots.map(s => ({
      eligible: s.worker?.state === 'ready' && !s.stalled && !s.retiring,
      open: s.worker?.open ?? 0,
      accepted: s.acceptedBefore + (s.worker?.accepted ?? 0)
    }))
  }

  /** Slot numbers are 1-based in every message, 0-based in fields. */
  line (slot: Slot): string {
    return `slot ${slot.index + 1} of ${this.slots.length}`
  }

  /** Something changed (on `slot`, or table-wide): the one hook runs. */
  changed (slot: Slot | null = null): void {
    this.hook(slot)
  }
}
