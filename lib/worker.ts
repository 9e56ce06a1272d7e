// The worker runtime: one process per slot, spawned by the supervisor with
// its slot's listening fds. Loads the app like fastify-cli, serves the
// inherited sockets, and drains when told to.
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import reuseport from '../index'
import { describeLoadError, loadApp } from './app'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { acceptedConnections, drain, trackSessions, type OpenConnections } from './drain'
import { WORKER_ENV, type ErrorInfo, type FatalMessage, type SupervisorMessage, type WorkerConfig, type WorkerMessage } from './messages'

function send (message: WorkerMessage | FatalMessage): Promise<void> {
  return new Promise(resolve => {
    if (!process.send || !process.connected) return resolve()
    process.send(message, undefined, {}, () => resolve())
  })
}

/** Where this worker is in its life, for the supervisor's crash line. */
let phase: FatalMessage['phase'] = 'boot'
/** Set once die() runs: a drain finishing meanwhile must not exit 0 first. */
let dying = false

function errorInfo (err: unknown): ErrorInfo {
  const e = (err instanceof Error ? err : new Error(String(err))) as Error & { code?: unknown }
  return { name: e.name, message: e.message, stack: e.stack ?? `${e.name}: ${e.message}`, ...(typeof e.code === 'string' ? { code: e.code } : {}) }
}

/**
 * Ends the worker on an error, telling the supervisor first: it logs the
 * error with the slot (or, at boot, makes it the cause of
 * FST_REUSEPORT_WORKER_FAILED), so nothing is printed here unless nobody
 * listens.
 */
async function die (error: ErrorInfo): Promise<never> {
  dying = true
  if (process.connected) {
    // Bounded: a supervisor that reads nothing must not keep a broken worker alive.
    await Promise.race([
      (async () => {
        await send({ type: 'fatal', phase, error })
        if (phase === 'boot') await send({ type: 'error', code: error.code ?? error.name, message: error.message })
      })(),
      new Promise(resolve => setTimeout(resolve, 1000).unref())
    ])
  } else {
    process.stderr.write(error.stack + '\n')
  }
  process.exit(1)
}

/** "2 http/1.1, 1 websocket" */
function describeOpen (closed: OpenConnections): string {
  return Object.entries(closed).filter(([, n]) => n > 0).map(([kind, n]) => `${n} ${kind}`).join(', ')
}

async function boot (config: WorkerConfig): Promise<FastifyInstance> {
  let app
  try {
    app = await loadApp(config.app)
  } catch (err) {
    return await die(await describeLoadError(err, config.app))
  }
  const logger = {
    level: config.logLevel,
    base: { pid: process.pid, slot: config.slot },
    ...(config.prettyLogs ? { transport: { target: 'pino-pretty' } } : {})
  }
  const options: FastifyServerOptions = {
    logger,
    pluginTimeout: config.pluginTimeout,
    ...(config.bodyLimit !== undefined ? { bodyLimit: config.bodyLimit } : {}),
    ...(config.useOptions ? app.options : {})
  }
  const fastify = Fastify(options)
  trackSessions(fastify.server)
  await fastify.register(reuseport)
  await fastify.register(app.plugin, {
    ...(config.useOptions ? app.options : {}),
    ...(config.prefix ? { prefix: config.prefix } : {})
  })
  // Host and port come from the inherited slot fds.
  await fastify.listen()
  return fastify
}

async function main (): Promise<void> {
  const config = JSON.parse(process.env[WORKER_ENV] ?? 'null') as WorkerConfig | null
  delete process.env[WORKER_ENV]
  if (config === null) {
    process.stderr.write(`fastify-reuseport: this is the worker runtime, started by "fastify-reuseport start"\n`)
    process.exit(2)
  }
  // The supervisor decides when a worker drains: Ctrl-C in a terminal reaches
  // the whole process group, and --drain-delay must keep workers serving.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => {})
  // Replaces Node's print-and-exit: the supervisor logs it, with the slot.
  process.on('uncaughtException', err => { void die(errorInfo(err)) })

  let fastify: FastifyInstance
  try {
    fastify = await boot(config)
  } catch (err) {
    return await die(errorInfo(err))
  }
  phase = 'serving'

  const stopHealth = reportHealth(fastify, config.healthMs)
  let stopping = false
  const stop = async (): Promise<void> => {
    if (stopping) return
    stopping = true
    phase = 'draining'
    stopHealth()
    const { clean, closed } = await drain(fastify, { idleMs: config.idleMs, graceMs: config.graceMs })
    if (!clean) fastify.log.warn({ closed }, `drain grace period over: closed ${describeOpen(closed)}`)
    // Bounded: a connection drain() could not see (a raw upgrade) would hold
    // server.close() open; exiting closes it.
    await Promise.race([fastify.close(), new Promise(resolve => setTimeout(resolve, clean ? config.graceMs : 1000).unref())])
    if (!dying) process.exit(0)
  }
  process.on('message', (message: SupervisorMessage) => { if (message.type === 'drain') void stop() })
  // The supervisor is gone (even SIGKILLed): nobody will restart us, so leave cleanly.
  process.on('disconnect', () => { void stop() })
  const addresses = fastify.addresses().map(a => typeof a === 'string' ? a : `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`)
  await send({ type: 'ready', addresses })
}

/**
 * Tells the supervisor how late this event loop runs, so that it can steer
 * new connections away from a stalled worker. A blocked loop sends nothing,
 * which the supervisor notices too.
 */
function reportHealth (fastify: FastifyInstance, everyMs: number): () => void {
  const histogram = monitorEventLoopDelay({ resolution: 10 })
  histogram.enable()
  const timer = setInterval(() => {
    const delayMs = histogram.max / 1e6
    histogram.reset()
    void send({ type: 'health', delayMs, accepted: acceptedConnections(fastify.server) })
  }, everyMs)
  timer.unref()
  return () => {
    clearInterval(timer)
    histogram.disable()
  }
}

void main()
