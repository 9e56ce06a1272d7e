// The public surface of a running supervisor: what start() resolves to, the
// slot figures it reports and the events it emits.
import type { EventEmitter } from 'node:events'
import type { ReplaceReason } from './policy'

export type SlotState = 'starting' | 'ready' | 'draining' | 'stalled' | 'dead'

export interface SlotInfo {
  slot: number
  state: SlotState
  pid: number | null
  /** Connections accepted by this slot's workers, all of them. */
  accepted: number
  /** Connections waiting in the slot's accept queue now. */
  queued: number
  /** Worst event-loop delay its worker reported in its last interval, ms. */
  loopDelayMs: number
  /** Connections its worker holds open (last report). */
  open: number
  /** Its worker's resident set size at its last report, bytes (0: no worker). */
  rss: number
  /** Requests its worker has served (counted only with maxRequests). */
  requests: number
  /** TLS handshakes its workers completed by resuming a session (a ticket), and in full. */
  tlsResumed: number
  tlsFull: number
  restarts: number
  stalls: number
  /** Workers replaced on this slot by the self-healing rules, by reason. */
  replacements: Record<ReplaceReason, number>
  /** Connections from its queue passed to other workers while it had none. */
  handedOff: number
  /** How the slot's last worker exited unexpectedly ("code 1", "signal SIGKILL"). */
  lastExit: string | null
}

/** A slot as plain data: what the supervisor knows of it, for snapshot(). */
export interface SlotSnapshot {
  index: number
  fds: number[]
  worker: number | null
  workers: Array<{ pid: number, state: 'starting' | 'ready' | 'draining' | 'exited' }>
  retiring: boolean
  stalled: boolean
  orphaned: boolean
  restarts: number
  failures: number
  earlyDeaths: number
  stalls: number
  replacements: Record<ReplaceReason, number>
  handedOff: number
  lastExit: string | null
}

/** The supervisor's state as one plain value. */
export interface SupervisorSnapshot {
  balancer: 'reuseport' | 'cluster'
  port: number
  addresses: string[]
  lastServedAt: number
  closing: boolean
  slots: SlotSnapshot[]
}

/** The events a SupervisorHandle emits. */
export interface SupervisorEvents {
  /** Any slot state change. */
  slot: [info: SlotInfo]
  /** A worker exited unexpectedly; a replacement is on its way. */
  exit: [event: { slot: number, pid: number, code: number | null, signal: NodeJS.Signals | null, error: Error | null }]
  respawn: [event: { slot: number, pid: number }]
  stall: [event: { slot: number, pid: number, reason: string }]
  recover: [event: { slot: number, pid: number }]
  /** A worker is being replaced: hung (killed at once), or past --max-memory or --max-requests (gracefully). */
  replace: [event: { slot: number, pid: number, reason: ReplaceReason, detail: string }]
  /** The slot count after a scale change. */
  scale: [slots: number]
  reloaded: []
  /** No slot has served for crashLoopTimeout: the supervisor closes itself; exit non-zero. */
  fatal: [err: Error]
  close: []
}

export interface SupervisorHandle extends EventEmitter {
  on<E extends keyof SupervisorEvents> (event: E, listener: (...args: SupervisorEvents[E]) => void): this
  once<E extends keyof SupervisorEvents> (event: E, listener: (...args: SupervisorEvents[E]) => void): this
  readonly port: number
  readonly addresses: string[]
  /** The metrics server's address, when metricsPort was given. */
  readonly metricsPort: number | null
  /** Pids of the workers that serve, in slot order. */
  pids (): number[]
  slots (): SlotInfo[]
  /** The supervisor's state as one plain value: slots, their fds and workers, counters. */
  snapshot (): SupervisorSnapshot
  /** Rolling restart, slot by slot, re-reading the app from disk. Rejects, keeping the old workers, when a new one fails. */
  reload (): Promise<void>
  /** Adds or retires slots until there are n. Retiring steers a slot out, serves what is queued on it, then closes it. */
  scale (n: number): Promise<void>
  /**
   * Replaces the supervisor's own program in place (SIGUSR2): same pid, no
   * socket closed, the workers adopted then rolled onto the new code. Rejects
   * with FST_REUSEPORT_UPGRADE_FAILED, changing nothing, when the new code
   * fails its preflight or execve fails; resolves never in the old program
   * when it works (the process is the new program then). docs/upgrade.md.
   */
  upgrade (): Promise<void>
  /** Drains every worker, closes the slots. */
  close (options?: { drainDelay?: number }): Promise<void>
}
