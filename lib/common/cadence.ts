// How often health is paid for: decisions as pure functions (unit tests in
// test/unit/cadence.test.js). Stall detection matters only while connections
// wait, and an idle worker has none waiting (issue 21): at 32 idle workers a
// report every 50 ms and a 20 ms tick cost the supervisor 9.6% of a core and
// every worker 1.7%. So
// - a worker with no open connection, and none accepted since its last
//   report, reports slowly (a heartbeat), and at once when a connection
//   arrives, then every healthMs again;
// - the supervisor ticks slowly while every slot is idle, and fast once any
//   worker is busy, any accept queue holds a connection, or anything is in
//   flight (a stalled slot, a slot without its worker, a reload).
// A worker that stalls while idle sends nothing when its first connection
// arrives: the connection waits in its accept queue, the supervisor's watch
// on the listening sockets wakes it, and stallReason() steers the slot out
// once the queue has held with no report for 2 healthMs.

/**
 * An idle worker's heartbeat, ms: liveness for --worker-timeout and RSS for
 * --max-memory. Each one costs the supervisor a wake-up and a JSON parse:
 * at 32 workers, a 1 s heartbeat cost it 0.5% of a core.
 */
export const IDLE_REPORT_MS = 5000
/**
 * The supervisor's tick while every slot is idle, ms: the rules that need a
 * clock (a worker silent past --worker-timeout, the crash loop, replacements
 * due). A connection needs none: while the fleet idles, a watch on the
 * listening sockets (native/readable.cc) wakes the supervisor the moment one
 * queues, and it ticks fast from then on. Reading the queues every 100 ms
 * instead cost a 32-worker supervisor about 0.25% of a core.
 */
export const IDLE_TICK_MS = 500

/**
 * An idle worker's report interval: IDLE_REPORT_MS, or less so that a
 * --worker-timeout sees 4 heartbeats before it calls a worker hung; never
 * below healthMs.
 */
export function idleReportMs (healthMs: number, workerTimeout: number): number {
  const cap = workerTimeout > 0 ? Math.floor(workerTimeout / 4) : IDLE_REPORT_MS
  return Math.max(healthMs, Math.min(IDLE_REPORT_MS, cap))
}

/**
 * The delay to the next multiple of periodMs on the wall clock, in
 * (0, periodMs]: idle workers' heartbeats land on the same instants, so that
 * an idle supervisor wakes for a burst of them about once per period instead
 * of once per worker (32 wakes per 5 s at 32 workers). Never later than the
 * period a worker announces.
 */
export function alignedDelayMs (wallNow: number, periodMs: number): number {
  return periodMs - (wallNow % periodMs)
}

/** What a worker knows at report time. */
export interface WorkerActivity {
  /** Connections open now. */
  open: number
  /** Connections accepted since its previous report. */
  acceptedSince: number
  /** This report was sent because a connection arrived while idle. */
  woken: boolean
}

/** When a worker's next report is due, ms: fast while it serves or just served, slow when idle. */
export function nextReportMs (a: WorkerActivity, healthMs: number, idleMs: number): number {
  return a.open > 0 || a.acceptedSince > 0 || a.woken ? healthMs : idleMs
}

/**
 * How long a worker has been silent past the cadence it announced: a busy
 * worker promises a report every healthMs, an idle one every reportMs (and
 * one at once on a connection). The stall, hang-at-drain and hand-off rules
 * compare this with what they compared raw silence with before, so that a
 * slow heartbeat reads as on time. Equal to now - healthAt while busy.
 */
export function silentMs (now: number, healthAt: number, reportMs: number, healthMs: number): number {
  return now - healthAt - Math.max(0, reportMs - healthMs)
}

/** What the tick cadence sees of one slot. */
export interface SlotActivity {
  /** Its worker is ready and announced the idle cadence. */
  idle: boolean
  /** Connections in its accept queue at the last tick (0 when not read). */
  queued: number
  stalled: boolean
}

/**
 * The supervisor's next tick, ms: `fastMs` (today's cadence) unless every
 * slot is idle with an empty queue and nothing else is in flight (`busy`:
 * a reload, a scale change, a replacement, a worker starting).
 */
export function tickMs (slots: readonly SlotActivity[], busy: boolean, fastMs: number): number {
  if (busy) return fastMs
  for (const s of slots) if (!s.idle || s.queued > 0 || s.stalled) return fastMs
  return Math.max(fastMs, IDLE_TICK_MS)
}
