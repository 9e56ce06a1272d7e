// When, not how: the supervisor's decisions as small pure functions over
// samples (health reports, accept-queue depth, RSS, request counts). The
// supervisor gathers the samples and executes what these return; tests call
// them without processes (test/unit/policy.test.js).
import { silentMs } from '../common/cadence'

/** What the supervisor knows of one serving slot at one sample. */
export interface SlotSample {
  now: number
  /** When its worker's last health report arrived. */
  healthAt: number
  /** Worst event-loop delay its worker reported in its last interval, ms. */
  delayMs: number
  /** Connections its worker has accepted so far. */
  accepted: number
  /** Connections waiting in the slot's accept queue now. */
  queued: number
  /** The report interval its worker announced last (lib/common/cadence.ts): healthMs while busy, more while idle. Default healthMs. */
  reportMs?: number
}

/** What the stall rule remembers of a slot between samples. */
export interface StallMemory {
  /** The accept queue at the previous sample. */
  lastQueued: number
  /** Since when the queue has held stallQueue or more, and the accepted count then. */
  queueFull: { since: number, accepted: number } | null
  /** Since when the queue has held connections without a break (null: it is empty). */
  queuedSince: number | null
}

export interface StallLimits {
  /** Loop delay or silence past this is a stall, ms. */
  stallTimeout: number
  /** A queue this long while nothing is accepted is a stall. */
  stallQueue: number
  /** How often workers report, ms. */
  healthMs: number
}

export const freshStallMemory = (): StallMemory => ({ lastQueued: 0, queueFull: null, queuedSince: null })

/**
 * Why a slot counts as stalled at this sample (null: it does not), and what
 * to remember for the next one. Stalled when
 * - its worker has sent no report for two intervals while its accept queue
 *   grows: the fast signal, caught within about 100 ms;
 * - its queue has held connections for two intervals with no report since it
 *   first did: an idle worker reports at once on a connection, so this
 *   catches one stalled while idle (its queue holds one connection, which
 *   does not grow) within the idle tick and 100 ms;
 * - its worker has been silent, or reported a loop delay, past stallTimeout;
 * - its queue holds stallQueue or more while its worker accepts nothing (a
 *   report came and the accepted count did not move): a full queue alone is
 *   only saturation, which flapped 13 times in 4 s when it counted.
 * Silence counts past the cadence the worker announced (silentMs in
 * lib/common/cadence.ts): an idle worker's slow heartbeat is not silence.
 */
export function stallReason (s: SlotSample, memory: StallMemory, limits: StallLimits): { reason: string | null, memory: StallMemory } {
  const { stallTimeout, stallQueue, healthMs } = limits
  const growing = s.queued > 0 && s.queued > memory.lastQueued
  const queueFull = s.queued < stallQueue ? null : memory.queueFull ?? { since: s.now, accepted: s.accepted }
  const queuedSince = s.queued === 0 ? null : memory.queuedSince ?? s.now
  const notAccepting = queueFull !== null && s.healthAt > queueFull.since + healthMs && s.accepted === queueFull.accepted
  const silent = silentMs(s.now, s.healthAt, s.reportMs ?? healthMs, healthMs)
  const waiting = queuedSince !== null && s.healthAt < queuedSince && s.now - queuedSince > 2 * healthMs
  const reason = silent > stallTimeout || (growing && silent > 2 * healthMs) || waiting
    ? `event loop silent for ${s.now - s.healthAt} ms, ${s.queued} connections queued`
    : s.delayMs > stallTimeout
      ? `event loop delay ${Math.round(s.delayMs)} ms`
      : notAccepting ? `${s.queued} connections queued, none accepted` : null
  return { reason, memory: { lastQueued: s.queued, queueFull, queuedSince } }
}

/** A stalled slot comes back once nothing is wrong, its queue is empty and its reports are on time. */
export function recovered (s: SlotSample, reason: string | null, healthMs: number): boolean {
  return reason === null && s.queued === 0 && silentMs(s.now, s.healthAt, s.reportMs ?? healthMs, healthMs) <= 2 * healthMs
}

/**
 * Steering a slot out only helps while another slot is healthy: under even
 * saturation every loop runs late and every queue is long, and steering
 * would only move the load around. Never steer out the last healthy slot.
 */
export function mayStall (slot: number, healthy: ReadonlySet<number>): boolean {
  for (const other of healthy) if (other !== slot) return true
  return false
}

export type ReplaceReason = 'hung' | 'memory' | 'requests'

export const REPLACE_REASONS: readonly ReplaceReason[] = ['hung', 'memory', 'requests']

/** What the replacement rules see of one serving worker. */
export interface WorkerSample {
  now: number
  healthAt: number
  /** Resident set size from its last report, bytes. */
  rss: number
  /** Requests it has served. */
  requests: number
  /** This worker's request limit, from requestLimit() (0: none). */
  requestLimit: number
}

export interface ReplaceLimits {
  /** No health report for this long: hung, ms (0: never). */
  workerTimeout: number
  /** RSS past this many bytes (0: no limit). */
  maxMemory: number
}

/**
 * Whether a serving worker must be replaced, and why: a hung one at once
 * (it cannot drain, so it is killed), the others gracefully.
 */
export function replaceReason (w: WorkerSample, limits: ReplaceLimits): { reason: ReplaceReason, detail: string } | null {
  const silentMs = w.now - w.healthAt
  if (limits.workerTimeout > 0 && silentMs > limits.workerTimeout) {
    return { reason: 'hung', detail: `no health report for ${silentMs} ms` }
  }
  if (limits.maxMemory > 0 && w.rss > limits.maxMemory) {
    return { reason: 'memory', detail: `RSS ${formatSize(w.rss)} over --max-memory ${formatSize(limits.maxMemory)}` }
  }
  if (w.requestLimit > 0 && w.requests >= w.requestLimit) {
    return { reason: 'requests', detail: `served ${w.requests} requests, limit ${w.requestLimit}` }
  }
  return null
}

/**
 * gunicorn's max_requests with max_requests_jitter: each worker's limit is
 * max + randint(0, jitter), so that workers started together do not all
 * recycle together. random is Math.random's range, [0, 1).
 */
export function requestLimit (max: number, jitter: number, random: number): number {
  if (max <= 0) return 0
  return max + Math.floor(random * (jitter + 1))
}

/**
 * Which slot to replace next. At most one replacement runs at a time, so
 * capacity stays at N-1 or more: graceful ones wait while another replacement
 * (or a reload, or a scale change) runs. A hang pre-empts: a hung worker
 * serves nothing, and its queue needs a worker now.
 */
export function nextReplacement (candidates: ReadonlyArray<{ slot: number, reason: ReplaceReason }>, busy: boolean): { slot: number, reason: ReplaceReason } | null {
  const hung = candidates.find(c => c.reason === 'hung')
  if (hung) return hung
  return busy ? null : candidates[0] ?? null
}

/** A worker ready this long has settled: its slot is healthy again. */
export const SETTLED_MS = 5000

/**
 * A slot's consecutive failures after its worker died, which set the respawn
 * backoff. A worker that served (accepted connections, or was ready for
 * SETTLED_MS) resets them: it is respawned at once, and the connections
 * queued on its slot need that. Dying at boot, or ready but never serving,
 * is a backoff step.
 */
export function failuresAfterExit (failures: number, readyForMs: number | null, accepted: number): number {
  return readyForMs !== null && (readyForMs >= SETTLED_MS || accepted > 0) ? 0 : failures + 1
}

/**
 * Whether a slot's ready worker counts as serving for the crash-loop rule: a
 * slot whose workers died early (earlyDeaths, reset once one settles) is on
 * probation until its worker has been ready for SETTLED_MS, even if each one
 * served for a moment before it died.
 */
export function healthySlot (readyForMs: number, earlyDeaths: number): boolean {
  return earlyDeaths === 0 || readyForMs >= SETTLED_MS
}

/** What the crash-loop rule sees of one slot's ready worker. */
export interface ReadySlot {
  /** How long its worker has been ready, ms. */
  readyForMs: number
  /** Its slot's deaths before SETTLED_MS since a worker last settled. */
  earlyDeaths: number
}

/**
 * The last moment some slot served, for the crash-loop rule: now while a
 * slot is healthy (healthySlot), else unchanged. Becoming ready is not
 * serving: a worker that dies 300 ms after each promotion must not restart
 * the clock at every respawn, or the rule fires only once the respawn
 * backoff outgrows the timeout (15.4 s for a 4 s timeout; never for 30 s).
 */
export function lastServed (lastServedAt: number, now: number, ready: readonly ReadySlot[]): number {
  return ready.some(s => healthySlot(s.readyForMs, s.earlyDeaths)) ? now : lastServedAt
}

/** What the shed rule sees of one slot. */
export interface ShedSlot {
  /** Being retired (SIGTTOU): it drains next. */
  retiring: boolean
  /** A worker starting on it: a replacement (reload, --max-memory, --max-requests, a hang) or a respawn. */
  starting: boolean
}

/**
 * Whether the balancer may tell slots to end kept-alive connections now
 * (lib/shed.ts). Not while a slot's worker is about to be drained or
 * replaced, nor while a reload, a graceful replacement or a scale change is
 * under way or queued (busy): the drain ends those connections anyway, and a
 * shed 110 ms before it made their clients reconnect twice (issue 17.5). The
 * load moves during such changes, so no slot's share means much then either.
 */
export function mayShed (slots: readonly ShedSlot[], busy: boolean): boolean {
  return !busy && slots.every(s => !s.retiring && !s.starting)
}

/** How long to wait before respawning after `failures` consecutive failures: 0, then 100 ms doubling to 10 s. */
export function respawnDelay (failures: number): number {
  return failures <= 0 ? 0 : Math.min(10000, 100 * 2 ** (failures - 1))
}

/**
 * True when no slot has served for `timeout` ms: every worker keeps dying.
 * The supervisor then exits non-zero, so that Docker's or Kubernetes' restart
 * policy takes over instead of retrying forever.
 */
export function crashLooping (servingNow: boolean, lastServedAt: number, now: number, timeout: number): boolean {
  return timeout > 0 && !servingNow && now - lastServedAt > timeout
}

const UNITS: Record<string, number> = { '': 1, B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }

/** '512M', '1G', '1.5G', '300000000' (bytes) as PM2's max_memory_restart; null when malformed. */
export function parseSize (text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(text)
  if (m === null) return null
  const bytes = Math.round(Number(m[1]) * (UNITS[(m[2] as string).toUpperCase()] as number))
  return bytes > 0 ? bytes : null
}

export function formatSize (bytes: number): string {
  for (const unit of ['G', 'M', 'K'] as const) {
    const size = UNITS[unit] as number
    if (bytes >= size) return `${Math.round(bytes / size * 10) / 10}${unit}`
  }
  return `${bytes}B`
}

/** A worker silent this long is hung, not slow: it cannot drain, so it is not waited for. */
export function hung (silentMs: number, stallTimeout: number): boolean {
  return silentMs > Math.max(1000, stallTimeout)
}

/** What the hand-off rule sees of one slot. */
export interface HandoffSample {
  orphaned: boolean
  hasWorker: boolean
  closed: boolean
  retiring: boolean
  /** A hand-off serves its queue now. */
  active: boolean
  /** Not before this: simultaneous deaths are seen within milliseconds, and a connection passed to a dead worker would be lost. */
  handoffAfter: number
}

/**
 * Whether a slot's queue should be handed to the other workers now: it lost
 * its worker and has no new one, some other worker serves, and the
 * supervisor is not shutting down. A retiring slot keeps a hand-off it has
 * (its queue must still be served) but gets no new one.
 */
export function handoffWanted (s: HandoffSample, now: number, othersServe: boolean, closing: boolean): boolean {
  if (closing || s.closed || !s.orphaned || s.hasWorker || !othersServe) return false
  if (s.retiring) return s.active
  return s.active || now >= s.handoffAfter
}

/**
 * A worker that reported within two intervals of the cadence it announced
 * (silentMs: an idle worker's heartbeat is slow): a killed one stops at
 * once, before its exit is seen.
 */
export function freshHealth (now: number, healthAt: number, reportMs: number, healthMs: number): boolean {
  return silentMs(now, healthAt, reportMs, healthMs) <= 2 * healthMs
}
