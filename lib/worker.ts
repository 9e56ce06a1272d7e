// The worker runtime: one process per slot, spawned by the supervisor with
// its slot's listening fds. Loads the app like fastify-cli, serves the
// inherited sockets, and drains when told to.
import type net from 'node:net'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import reuseport from '../index'
import { loadApp } from './app'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { openChannel, type Channel } from './channel'
import { acceptedConnections, drain } from './drain'
import { handDown } from './listen'
import { openConnections, shed, trackSessions } from './shed'
import { LISTENERS_ENV, inheritedListeners } from './listener'
import { HANDOFF, WORKER_ENV, type ErrorReport, type SupervisorMessage, type WorkerConfig, type WorkerMessage } from './messages'
import { loadNative } from './native'

let channel: Channel | null = null

function send (message: WorkerMessage): Promise<void> {
  return channel === null ? Promise.resolve() : channel.send(message)
}

function report (err: unknown): ErrorReport {
  const e = (err instanceof Error ? err : new Error(String(err))) as NodeJS.ErrnoException
  return { code: e.code ?? e.name ?? 'Error', message: e.message, ...(e.stack !== undefined ? { stack: e.stack } : {}) }
}

async function boot (config: WorkerConfig, counter: { requests: number }): Promise<FastifyInstance> {
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
  // HTTP/2 sessions are listed nowhere by Node: rebalancing needs them (one listener per session).
  trackSessions(fastify.server)
  // Only with --max-requests: nothing runs per request otherwise.
  if (config.countRequests) fastify.server.on('request', () => { counter.requests++ })
  await fastify.register(reuseport)
  await fastify.register(app.plugin, {
    ...(config.useOptions ? app.options : {}),
    ...(config.prefix ? { prefix: config.prefix } : {})
  })
  // Host and port come from the inherited slot fds, or, under the cluster
  // balancer, from the supervisor: listen() then goes through its cluster primary.
  await fastify.listen(config.listen ?? undefined)
  return fastify
}

/**
 * Takes what the supervisor handed down out of reach of the app before it
 * loads: the environment variables (a process the app spawns while loading
 * must not inherit them), and the fds, marked close-on-exec (dup2() in the
 * spawning child cleared the flag, and libuv closes nothing on spawn).
 */
function takeHandDown (): { config: WorkerConfig | null, error: unknown } {
  const config = JSON.parse(process.env[WORKER_ENV] ?? 'null') as WorkerConfig | null
  let listeners = null
  let error: unknown = null
  try { listeners = inheritedListeners() } catch (err) { error = err }
  delete process.env[WORKER_ENV]
  delete process.env[LISTENERS_ENV]
  handDown(listeners)
  if (config === null) return { config, error }
  const { binding } = loadNative()
  const ipc = Number(process.env.NODE_CHANNEL_FD ?? 3)
  for (const fd of [config.control, ipc, ...(listeners ?? []).map(l => l.fd)]) {
    try { binding?.setCloexec(fd) } catch { /* not ours to worry about: the fd is gone */ }
  }
  return { config, error }
}

async function main (): Promise<void> {
  const { config, error } = takeHandDown()
  if (config === null) {
    process.stderr.write(`fastify-reuseport: this is the worker runtime, started by "fastify-reuseport start"\n`)
    process.exit(2)
  }
  channel = openChannel(config.control)
  // Our stdout and stderr are pipes the supervisor reads (lib/logs.ts): a
  // supervisor that is gone must not turn a log line into a crash mid-drain
  // (pino's own destination ignores EPIPE likewise).
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {})
  if (error !== null) {
    await send({ type: 'error', ...report(error) })
    process.exit(1)
  }
  // The supervisor decides when a worker drains: Ctrl-C in a terminal reaches
  // the whole process group, and --drain-delay must keep workers serving.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => {})

  const counter = { requests: 0 }
  let fastify: FastifyInstance
  try {
    fastify = await boot(config, counter)
  } catch (err) {
    await send({ type: 'error', ...report(err) })
    process.exit(1)
  }
  // The supervisor logs what killed us, with its stack, not just an exit code.
  const crash = (err: unknown): void => {
    process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`)
    void send({ type: 'crash', ...report(err) }).finally(() => process.exit(1))
  }
  process.on('uncaughtException', crash)
  process.on('unhandledRejection', crash)

  const stopHealth = reportHealth(fastify, config.healthMs, counter)
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
  channel.on('message', (message: SupervisorMessage) => {
    if (message.type === 'drain') void stop()
    else if (message.type === 'shed' && !stopping) shed(fastify.server, message.count, { idleMs: config.idleMs })
  })
  // The supervisor is gone (even SIGKILLed): nobody will restart us, so leave cleanly.
  channel.on('close', () => { void stop() })
  channel.unref()
  // A connection from the queue of a slot that has no worker right now
  // (lib/handoff.ts). Node's IPC channel carries it: only it passes sockets.
  process.on('message', (message: unknown, socket?: net.Socket) => {
    if (socket !== undefined && (message as { type?: unknown } | null)?.type === HANDOFF) {
      // Even while draining: it is answered with Connection: close, not reset.
      fastify.server.emit('connection', socket)
    }
  })
  const addresses = fastify.addresses().map(a => typeof a === 'string' ? a : `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`)
  await send({ type: 'ready', addresses })
}

/**
 * Tells the supervisor how late this event loop runs, so that it can steer
 * new connections away from a stalled worker, and what the replacement rules
 * need (RSS, requests). A blocked loop sends nothing, which the supervisor
 * notices too.
 */
function reportHealth (fastify: FastifyInstance, everyMs: number, counter: { requests: number }): () => void {
  const histogram = monitorEventLoopDelay({ resolution: 10 })
  histogram.enable()
  const timer = setInterval(() => {
    const delayMs = histogram.max / 1e6
    histogram.reset()
    void send({
      type: 'health',
      delayMs,
      accepted: acceptedConnections(fastify.server),
      open: openConnections(fastify.server),
      rss: process.memoryUsage.rss(),
      requests: counter.requests
    })
  }, everyMs)
  timer.unref()
  return () => {
    clearInterval(timer)
    histogram.disable()
  }
}

void main()
