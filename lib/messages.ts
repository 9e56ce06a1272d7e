// The IPC protocol between the supervisor and its workers.

/** What the supervisor tells a worker through its environment. */
export interface WorkerConfig {
  app: string
  slot: number
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
  /** Report event-loop delay and accepted connections this often, ms. */
  healthMs: number
}

export const WORKER_ENV = 'FASTIFY_REUSEPORT_WORKER'

export type WorkerMessage =
  | { type: 'ready', addresses: string[] }
  | { type: 'error', code: string, message: string }
  /** Event-loop delay (max over the last interval) and connections accepted so far. */
  | { type: 'health', delayMs: number, accepted: number }

export type SupervisorMessage = { type: 'drain' }

export function isWorkerMessage (value: unknown): value is WorkerMessage {
  if (typeof value !== 'object' || value === null) return false
  const m = value as Record<string, unknown>
  return (m.type === 'ready' && Array.isArray(m.addresses)) ||
    (m.type === 'error' && typeof m.code === 'string' && typeof m.message === 'string') ||
    (m.type === 'health' && typeof m.delayMs === 'number' && typeof m.accepted === 'number')
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
