// The supervisor's eyes: every tick it samples the slots (health reports,
// accept queues), decide() turns the sample into actions (pure, tested
// without processes), and the monitor executes them. Stalls steer a slot
// out and back in, hangs and limits replace workers, a crash loop ends the
// supervisor, and the balancer evens out a few long-lived connections.
import { tickMs } from '../common/cadence'
import type { SupervisorMessage } from '../common/messages'
import type { Context } from './context'
import {
  crashLooping, freshHealth, lastServed, mayShed, mayStall, nextReplacement, recovered, replaceReason, SETTLED_MS, stallReason,
  type ReplaceReason, type StallMemory
} from './policy'
import type { Slot, Worker } from './slot'
import { Ticker } from './ticker'

// A stuck worker gets its share of new connections until it is steered out:
// detection time is what this feature sells. This cadence runs while any
// worker is busy; an idle fleet runs lib/common/cadence.ts's slow one.
const SAMPLE_MS = 20
// Without stall steering, the replacement and crash-loop rules need no more.
const CHECK_MS = 100

/** What the rules see of one serving slot at one tick. */
export interface ServingSample {
  slot: number
  readyForMs: number
  earlyDeaths: number
  stalled: boolean
  stallMemory: StallMemory
  healthAt: number
  /** The report interval its worker announced last: healthMs while busy, its heartbeat while idle. */
  reportMs: number
  delayMs: number
  accepted: number
  /** The accept queue (read only when stall detection is on). */
  queued: number
  rss: number
  requests: number
  requestLimit: number
  /** No graceful replacement before this. */
  replaceAfter: number
}

export interface MonitorSample {
  now: number
  serving: ServingSample[]
  lastServedAt: number
  /** An operation runs or a worker is starting: graceful replacements wait. */
  busy: boolean
}

export interface MonitorLimits {
  crashLoopTimeout: number
  stallTimeout: number
  stallQueue: number
  healthMs: number
  workerTimeout: number
  maxMemory: number
}

export type Action =
  /** Its worker has been ready for SETTLED_MS: the slot's early deaths are forgiven. */
  | { type: 'settled', slot: number }
  /** Some slot serves: the crash-loop clock restarts. */
  | { type: 'served' }
  | { type: 'crash-loop' }
  | { type: 'remember', slot: number, memory: StallMemory }
  | { type: 'stall', slot: number, reason: string, queued: number }
  | { type: 'recover', slot: number }
  | { type: 'replace', slot: number, reason: ReplaceReason, detail: string }

/** The rules of one tick, in order: crash loop, stalls, replacements. */
export function decide (sample: MonitorSample, limits: MonitorLimits): Action[] {
  const { now, serving } = sample
  const actions: Action[] = []
  for (const s of serving) if (s.readyForMs >= SETTLED_MS && s.earlyDeaths > 0) actions.push({ type: 'settled', slot: s.slot })
  // Becoming ready is not serving: a slot whose workers keep dying soon after is on probation.
  const ready = serving.map(s => ({ readyForMs: s.readyForMs, earlyDeaths: s.readyForMs >= SETTLED_MS ? 0 : s.earlyDeaths }))
  const last = lastServed(sample.lastServedAt, now, ready)
  if (last === now) actions.push({ type: 'served' })
  else if (crashLooping(false, last, now, limits.crashLoopTimeout)) return [...actions, { type: 'crash-loop' }]

  if (limits.stallTimeout > 0) {
    const healthyNow = new Set(serving.filter(s => !s.stalled && freshHealth(now, s.healthAt, s.reportMs, limits.healthMs)).map(s => s.slot))
    for (const s of serving) {
      const point = { now, healthAt: s.healthAt, delayMs: s.delayMs, accepted: s.accepted, queued: s.queued, reportMs: s.reportMs }
      const { reason, memory } = stallReason(point, s.stallMemory, limits)
      actions.push({ type: 'remember', slot: s.slot, memory })
      if (!s.stalled && reason !== null) {
        if (!mayStall(s.slot, healthyNow)) continue
        healthyNow.delete(s.slot)
        actions.push({ type: 'stall', slot: s.slot, reason, queued: s.queued })
      } else if (s.stalled && recovered(point, reason, limits.healthMs)) {
        actions.push({ type: 'recover', slot: s.slot })
      }
    }
  }

  const candidates: Array<{ slot: number, reason: ReplaceReason, detail: string }> = []
  for (const s of serving) {
    const verdict = replaceReason({ now, healthAt: s.healthAt, rss: s.rss, requests: s.requests, requestLimit: s.requestLimit }, limits)
    if (verdict !== null && (verdict.reason === 'hung' || now >= s.replaceAfter)) candidates.push({ slot: s.slot, ...verdict })
  }
  const next = nextReplacement(candidates, sample.busy)
  if (next !== null) {
    const { detail } = candidates.find(c => c.slot === next.slot && c.reason === next.reason) as { detail: string }
    actions.push({ type: 'replace', slot: next.slot, reason: next.reason, detail })
  }
  return actions
}

/** What executes the replacements and the crash-loop exit. */
export interface MonitorHands {
  replaceHung: (slot: Slot, detail: string) => void
  replaceGracefully: (slot: Slot, reason: ReplaceReason, detail: string) => void
  crashLoop: () => void
  /** Operations queued or running. */
  pending: () => number
}

export class Monitor {
  private ticker: Ticker | null = null
  /** The fleet idled at the last tick (lib/common/cadence.ts). */
  private idle = false
  /** Stops the watch on the listening sockets that an idle fleet keeps. */
  private unwatch: (() => void) | null = null

  constructor (private readonly ctx: Context, private readonly hands: MonitorHands) {}

  start (): void {
    this.ticker = new Ticker(this.ctx.clock, () => this.tick(), () => this.tickMs())
  }

  stop (): void {
    this.ticker?.stop()
    this.setIdle(false)
  }

  /** A worker reported busy, or a connection queued: tick at the fast cadence from now on. */
  wake (): void {
    if (!this.idle) return
    this.setIdle(false)
    this.ticker?.wake(this.fastMs())
  }

  /**
   * An idle fleet's supervisor ticks slowly and learns of a connection from
   * the kernel: a watch on every listening socket, armed while it idles.
   */
  private setIdle (idle: boolean): void {
    if (idle === this.idle) return
    this.idle = idle
    this.unwatch?.()
    this.unwatch = null
    if (!idle) return
    const { table, sockets, log } = this.ctx
    try {
      this.unwatch = sockets.watch(table.slots.flatMap(s => s.listeners), () => {
        log.debug('a connection queued while every worker idled: ticking fast')
        this.wake()
      })
    } catch (err) {
      // Without it a queued connection waits for the next idle tick (IDLE_TICK_MS) instead.
      log.warn({ err }, `cannot watch the listening sockets while idle: ${(err as Error).message}`)
    }
  }

  private fastMs (): number {
    return this.ctx.settings.stallTimeout > 0 ? SAMPLE_MS : CHECK_MS
  }

  /** Fast while anything is busy or in flight, slow while the whole fleet idles. */
  private tickMs (): number {
    const { table, settings } = this.ctx
    const { healthMs } = settings.config
    const busy = this.hands.pending() > 0 || table.slots.some(s => s.worker?.state !== 'ready' || s.workers.size > 1 || s.orphaned)
    const slots = table.slots.map(s => ({ idle: (s.worker?.reportMs ?? 0) > healthMs, queued: s.stallMemory.lastQueued, stalled: s.stalled }))
    const ms = tickMs(slots, busy, this.fastMs())
    this.setIdle(ms > this.fastMs())
    return ms
  }

  sample (): MonitorSample {
    const { table, clock, sockets, settings } = this.ctx
    const now = clock.now()
    const serving = table.serving().map(s => {
      const w = s.worker as Worker
      return {
        slot: s.index,
        readyForMs: now - (w.readyAt as number),
        earlyDeaths: s.earlyDeaths,
        stalled: s.stalled,
        stallMemory: s.stallMemory,
        healthAt: w.healthAt,
        reportMs: w.reportMs,
        delayMs: w.delayMs,
        accepted: w.accepted,
        queued: settings.stallTimeout > 0 ? sockets.queued(s.listeners) : 0,
        rss: w.rss,
        requests: w.requests,
        requestLimit: w.requestLimit,
        replaceAfter: s.replaceAfter
      }
    })
    return { now, serving, lastServedAt: table.lastServedAt, busy: this.hands.pending() > 0 || table.starting() }
  }

  tick (): void {
    const { table, settings } = this.ctx
    if (table.closing) return
    const sample = this.sample()
    const limits = { ...settings, healthMs: settings.config.healthMs }
    for (const action of decide(sample, limits)) {
      if (action.type === 'crash-loop') {
        this.hands.crashLoop()
        return
      }
      this.execute(action, sample.now)
    }
    // One read of the loads serves steering and rebalancing.
    const loads = table.loads()
    this.ctx.sockets.steer(loads, sample.now)
    this.rebalance(loads, sample.now)
  }

  private execute (action: Exclude<Action, { type: 'crash-loop' }>, now: number): void {
    const { table, log, emit } = this.ctx
    if (action.type === 'served') {
      table.lastServedAt = now
      return
    }
    const slot = table.slots[action.slot] as Slot
    const w = slot.worker as Worker
    switch (action.type) {
      case 'settled':
        slot.earlyDeaths = 0
        break
      case 'remember':
        slot.stallMemory = action.memory
        break
      case 'stall':
        slot.stalled = true
        slot.stalls++
        log.warn({ slot: slot.index, workerPid: w.pid, queued: action.queued, reason: action.reason }, `${table.line(slot)}: stalled (${action.reason}); steered out`)
        emit('stall', { slot: slot.index, pid: w.pid, reason: action.reason })
        table.changed(slot)
        break
      case 'recover':
        slot.stalled = false
        log.info({ slot: slot.index, workerPid: w.pid }, `${table.line(slot)}: recovered; back in rotation`)
        emit('recover', { slot: slot.index, pid: w.pid })
        table.changed(slot)
        break
      case 'replace':
        if (action.reason === 'hung') this.hands.replaceHung(slot, action.detail)
        else this.hands.replaceGracefully(slot, action.reason, action.detail)
        break
    }
  }

  /** A slot holding more than its share of a few long-lived connections ends some kept-alive ones (lib/worker/shed.ts). */
  private rebalance (loads: ReturnType<Context['table']['loads']>, now: number): void {
    const { table, log, sockets } = this.ctx
    // Not while a slot is about to be drained or replaced: its drain ends those connections anyway.
    const churn = table.slots.map(s => ({ retiring: s.retiring, starting: table.starting(s) }))
    if (!mayShed(churn, this.hands.pending() > 0)) return
    const decision = sockets.rebalance(loads, now)
    if (decision.slot === null) return
    const slot = table.slots[decision.slot] as Slot
    const w = slot.worker as Worker
    log.info({ slot: slot.index, workerPid: w.pid, open: loads.map(l => l.open), count: decision.count },
      `${table.line(slot)}: holds ${w.open} of ${loads.reduce((n, l) => n + l.open, 0)} connections; ending ${decision.count} kept-alive at their next response`)
    const message: SupervisorMessage = { type: 'shed', count: decision.count }
    void w.proc.channel?.send(message)
  }
}
