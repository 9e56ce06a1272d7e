// The worker runtime: one process per slot, spawned by the supervisor with
// its slot's listening fds. Loads the app like fastify-cli, serves the
// inherited sockets, and drains when told to.
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import reuseport from '../index'
import { loadApp } from './app'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { acceptedConnections, drain } from './drain'
import { WORKER_ENV, type SupervisorMessage, type WorkerConfig, type WorkerMessage } from './messages'

function send (message: WorkerMessage): Promise<void> {
  return new Promise(resolve => {
    if (!process.send || !process.connected) return resolve()
    process.send(message, undefined, {}, () => resolve())
  })
}

async function boot (config: WorkerConfig): Promise<FastifyInstance> {
  const app = await loadApp(config.app)
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

  let fastify: FastifyInstance
  try {
    fastify = await boot(config)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    await send({ type: 'error', code: e.code ?? e.name ?? 'Error', message: e.message })
    process.exit(1)
  }

  const stopHealth = reportHealth(fastify, config.healthMs)
  let stopping = false
  const stop = async (): Promise<void> => {
    if (stopping) return
    stopping = true
    stopHealth()
    const clean = await drain(fastify.server, { idleMs: config.idleMs, graceMs: config.graceMs })
    if (!clean) {
      // fastify.close() would wait for them: the supervisor's SIGKILL would come first.
      fastify.log.warn('drain grace period over, closing remaining connections')
      fastify.server.closeAllConnections()
    }
    await fastify.close()
    process.exit(0)
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
