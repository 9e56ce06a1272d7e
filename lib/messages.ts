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
