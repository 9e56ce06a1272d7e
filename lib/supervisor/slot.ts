// The slot table's records: a slot (one socket per address, owned by the
// supervisor) and the worker processes started for it, with the figures
// they report. Pure read-outs only; the supervisor's parts change them.
import type { SlotInfo, SlotSnapshot, SlotState } from './handle'
import type { Listener } from '../common/listener'
import type { Timer } from './clock'
import { freshStallMemory, type ReplaceReason, type StallMemory } from './policy'
import type { QueueHandoff } from './sockets'
import type { WorkerProcess } from './spawn'

export interface Worker {
  proc: WorkerProcess
  pid: number
  slot: Slot
  /** draining also covers a hung worker on its way out: no longer the slot's. */
  state: 'starting' | 'ready' | 'draining' | 'exited'
  readyAt: number | null
  /** What it said it serves, when ready. */
  addresses: string[]
  /** The control protocol it announced when ready (lib/common/messages.ts). */
  protocol?: number
  /** Its last health report: when, and what it said. */
  healthAt: number
  delayMs: number
  accepted: number
  open: number
  rss: number
  requests: number
  /** TLS handshakes it completed: resumed, full. */
  tlsResumed: number
  tlsFull: number
  /** When its next report is due after its last, ms: healthMs while busy, its heartbeat while idle (lib/common/cadence.ts). */
  reportMs: number
  /** Its own --max-requests with jitter (0: none). */
  requestLimit: number
  /** The error it reported before it died (lib/worker/main.ts, die()). */
  error: Error | null
  /** When it said it crashed (an uncaught exception; lib/crash.ts): it drains, no longer the slot's. */
  crashedAt?: number
}

export interface Slot {
  index: number
  listeners: Listener[]
  /** The worker that serves it. */
  worker: Worker | null
  /** Every process started for this slot and not yet gone: the serving one, one starting, old ones draining. */
  workers: Set<Worker>
  retiring: boolean
  /** Retired: out of the table, its sockets closed. */
  closed: boolean
  restarts: number
  /** Consecutive failures: deaths at boot, or ready but before serving (the backoff). */
  failures: number
  /** Deaths before SETTLED_MS of readiness since a worker last settled (the crash-loop rule). */
  earlyDeaths: number
  lastExit: string | null
  respawnTimer: Timer | null
  /** Connections accepted by this slot's earlier workers. */
  acceptedBefore: number
  /** TLS handshakes completed by this slot's earlier workers. */
  tlsBefore: { resumed: number, full: number }
  stalled: boolean
  stalls: number
  stallMemory: StallMemory
  replacements: Record<ReplaceReason, number>
  /** No graceful replacement before this: the last one failed to boot. */
  replaceAfter: number
  /** Lost its serving worker (crash, hang) and has no new one yet: its queue is handed off. */
  orphaned: boolean
  /** Its queue is handed over no sooner than this (lets simultaneous deaths be seen first). */
  handoffAfter: number
  handoff: QueueHandoff | null
  handedOffBefore: number
}

export function newSlot (index: number, listeners: Listener[]): Slot {
  return {
    index,
    listeners,
    worker: null,
    workers: new Set(),
    retiring: false,
    closed: false,
    restarts: 0,
    failures: 0,
    earlyDeaths: 0,
    lastExit: null,
    respawnTimer: null,
    acceptedBefore: 0,
    tlsBefore: { resumed: 0, full: 0 },
    stalled: false,
    stalls: 0,
    stallMemory: freshStallMemory(),
    replacements: { hung: 0, memory: 0, requests: 0 },
    replaceAfter: 0,
    orphaned: false,
    handoffAfter: 0,
    handoff: null,
    handedOffBefore: 0
  }
}

export function slotState (s: Slot): SlotState {
  if (s.retiring) return 'draining'
  if (s.worker === null) return [...s.workers].some(w => w.state === 'starting') ? 'starting' : 'dead'
  return s.stalled ? 'stalled' : 'ready'
}

/** What handle.slots() and /metrics report of a slot; queued comes from the socket (TCP_INFO). */
export function slotInfo (s: Slot, queued: number): SlotInfo {
  const w = s.worker
  return {
    slot: s.index,
    state: slotState(s),
    pid: w?.pid ?? null,
    accepted: s.acceptedBefore + (w?.accepted ?? 0),
    queued,
    loopDelayMs: w?.delayMs ?? 0,
    open: w?.open ?? 0,
    rss: w?.rss ?? 0,
    requests: w?.requests ?? 0,
    tlsResumed: s.tlsBefore.resumed + (w?.tlsResumed ?? 0),
    tlsFull: s.tlsBefore.full + (w?.tlsFull ?? 0),
    restarts: s.restarts,
    stalls: s.stalls,
    replacements: { ...s.replacements },
    handedOff: s.handedOffBefore + (s.handoff?.count ?? 0),
    lastExit: s.lastExit
  }
}

export function slotSnapshot (s: Slot): SlotSnapshot {
  return {
    index: s.index,
    fds: s.listeners.map(l => l.fd),
    worker: s.worker?.pid ?? null,
    workers: [...s.workers].map(w => ({ pid: w.pid, state: w.state })),
    retiring: s.retiring,
    stalled: s.stalled,
    orphaned: s.orphaned,
    restarts: s.restarts,
    failures: s.failures,
    earlyDeaths: s.earlyDeaths,
    stalls: s.stalls,
    replacements: { ...s.replacements },
    handedOff: s.handedOffBefore + (s.handoff?.count ?? 0),
    lastExit: s.lastExit
  }
}
