// The protocol between the supervisor and its workers, spoken over the
// private control channel (lib/common/channel.ts).

/**
 * The control protocol's version. Each side accepts its own and the one
 * before, so that an upgrade (lib/supervisor/upgrade.ts) or a reload from a
 * newer dist/ under an older supervisor works one version apart, and fails
 * with FST_REUSEPORT_PROTOCOL further apart. 1: the unversioned protocol,
 * before version numbers were exchanged. Bump it for any change an older
 * peer would misread.
 */
export const PROTOCOL = 2

/** Whether we can talk to a peer that speaks `theirs` (undefined: protocol 1, which sent none). */
export function protocolAccepted (theirs: number | undefined, ours: number = PROTOCOL): boolean {
  const t = theirs ?? 1
  return t === ours || t === ours - 1
}

/** The text of FST_REUSEPORT_PROTOCOL. */
export function protocolMismatch (who: string, theirs: number | undefined, ours: number = PROTOCOL): string {
  return `${who} speaks control protocol ${theirs ?? 1}, this side speaks ${ours} and accepts ${ours - 1} to ${ours}; ` +
    'run the supervisor and its workers from releases at most one protocol apart (upgrade in steps, or restart the whole service)'
}
/** What the supervisor tells a worker through its environment, which the worker removes before the app loads. */
export interface WorkerConfig {
  /** The supervisor's control protocol (absent: protocol 1). */
  protocol?: number
  app: string
  slot: number
  /** The control channel's fd. */
  control: number
  /** Our parent: once it is not, the supervisor is gone (lib/orphan.ts). */
  supervisorPid: number
  logLevel: string
  prettyLogs: boolean
  /** fastify-cli's -o: merge the app's exported `options` into the Fastify options. */
  useOptions: boolean
  prefix: string | undefined
  pluginTimeout: number
  bodyLimit: number | undefined
  /** Close a kept-alive connection after it has been idle this long while draining. */
  idleMs: number
  /** Stop waiting for connections after this long while draining. */
  graceMs: number
  /** How long a worker that crashed (an uncaught exception) may answer what it has in flight, ms (lib/crash.ts). */
  crashGraceMs: number
  /** Report event-loop delay and accepted connections this often, ms. */
  healthMs: number
  /** ... and this often while idle: no open connection, none accepted since the last report (lib/common/cadence.ts). */
  heartbeatMs: number
  /** Count requests for --max-requests (nothing is counted per request otherwise). */
  countRequests: boolean
  /**
   * The cluster balancer's listen options: the worker listens itself, through
   * Node's cluster primary. null: serve the slot fds handed down.
   */
  listen: { port: number, host: string, backlog: number } | null
}

export const WORKER_ENV = 'FASTIFY_REUSEPORT_WORKER'

/** The serialized error of a worker that failed to boot or crashed. */
export interface ErrorReport {
  code: string
  message: string
}

export type WorkerMessage =
  /** protocol: the worker's own (absent: protocol 1). */
  | { type: 'ready', addresses: string[], protocol?: number }
  | ({ type: 'error' } & ErrorReport)
  /**
   * Event-loop delay (max over the last interval), connections accepted so
   * far and open now, resident set size and requests served; the next
   * report comes within nextMs (or at once on a connection; absent from
   * protocol 1 workers, which report every healthMs).
   */
  | { type: 'health', delayMs: number, accepted: number, open: number, rss: number, requests: number, tlsResumed?: number, tlsFull?: number, nextMs?: number }
  /** Its TLS server holds the shared ticket keys (lib/tls-keys.ts), in this mode; sent before 'ready'. */
  | { type: 'tls', mode: 'rotating' | 'single' }
  /** An uncaught exception (sent after its 'fatal' message): no longer accepting, answering what it has, exiting within the crash grace. */
  | { type: 'crashing' }

export type SupervisorMessage =
  | { type: 'drain' }
  /** End this many kept-alive connections gracefully (lib/worker/shed.ts): the slot holds more than its share. */
  | { type: 'shed', count: number }
  /** The TLS session ticket keys (lib/ticket-keys.ts), base64: right after spawn, then at each change. */
  | { type: 'tls-keys', keys: string[] }

/** Over Node's IPC channel, with the socket as its handle: a connection from an orphaned slot's queue. */
export const HANDOFF = 'fastify-reuseport:connection'

export function isWorkerMessage (value: unknown): value is WorkerMessage {
  if (typeof value !== 'object' || value === null) return false
  const m = value as Record<string, unknown>
  return (m.type === 'ready' && Array.isArray(m.addresses)) ||
    m.type === 'crashing' ||
    (m.type === 'error' && typeof m.code === 'string' && typeof m.message === 'string') ||
    (m.type === 'health' && typeof m.delayMs === 'number' && typeof m.accepted === 'number' &&
      typeof m.open === 'number' && typeof m.rss === 'number' && typeof m.requests === 'number' && (m.nextMs === undefined || typeof m.nextMs === 'number')) ||
    (m.type === 'tls' && (m.mode === 'rotating' || m.mode === 'single'))
}

/** An error as it crosses the IPC channel: the stack keeps Node's location lines of a SyntaxError. */
export interface ErrorInfo {
  name: string
  message: string
  code?: string
  stack: string
}

/**
 * An error that ends the worker, sent before it exits: at boot (before the
 * 'error' message, as that message's cause), or an uncaught exception while
 * serving or draining.
 */
export type FatalMessage = { type: 'fatal', phase: 'boot' | 'serving' | 'draining', error: ErrorInfo }

export function isFatalMessage (value: unknown): value is FatalMessage {
  if (typeof value !== 'object' || value === null) return false
  const m = value as Record<string, unknown>
  const e = m.error as Record<string, unknown> | null | undefined
  return m.type === 'fatal' && typeof m.phase === 'string' && typeof e === 'object' && e !== null &&
    typeof e.message === 'string' && typeof e.stack === 'string'
}

/**
 * A config from a supervisor of the previous protocol (1) lacks what later
 * releases added: its worker then behaves as that release's did. Without
 * this, a missing supervisorPid read as an orphaned worker, which exited at
 * once under an old supervisor's SIGHUP.
 */
export function withConfigDefaults (config: WorkerConfig): WorkerConfig {
  const c = config as Partial<WorkerConfig> & WorkerConfig
  return {
    ...c,
    supervisorPid: c.supervisorPid ?? process.ppid,
    heartbeatMs: c.heartbeatMs ?? c.healthMs,
    crashGraceMs: c.crashGraceMs ?? 0
  }
}
