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
}

export const WORKER_ENV = 'FASTIFY_REUSEPORT_WORKER'

export type WorkerMessage =
  | { type: 'ready', addresses: string[] }
  | { type: 'error', code: string, message: string }

export type SupervisorMessage = { type: 'drain' }

export function isWorkerMessage (value: unknown): value is WorkerMessage {
  if (typeof value !== 'object' || value === null) return false
  const m = value as Record<string, unknown>
  return (m.type === 'ready' && Array.isArray(m.addresses)) ||
    (m.type === 'error' && typeof m.code === 'string' && typeof m.message === 'string')
}
