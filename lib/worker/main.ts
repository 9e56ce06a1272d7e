// The worker runtime: one process per slot, spawned by the supervisor with
// its slot's listening fds. Loads the app like fastify-cli, serves the
// inherited sockets, and drains when told to.
import type net from 'node:net'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { plugin as reuseport } from '../plugin/plugin'
import { describeLoadError, loadApp } from './app'
import { openChannel, type Channel } from '../common/channel'
import { FST_REUSEPORT_PROTOCOL } from '../common/errors'
import { crashHandler, errorInfo } from './crash'
import { trackSessions } from '../plugin/connections'
import { drain, type OpenConnections } from '../plugin/drain'
import { handDown } from '../plugin/listen'
import { LISTENERS_ENV, inheritedListeners } from '../common/listener'
import { HANDOFF, PROTOCOL, WORKER_ENV, withConfigDefaults, protocolAccepted, protocolMismatch, type ErrorInfo, type FatalMessage, type SupervisorMessage, type WorkerConfig, type WorkerMessage } from '../common/messages'
import { loadNative } from '../common/native'
import { reportHealth } from './health'
import { watchSupervisor } from './orphan'
import { shed } from './shed'
import { WorkerTickets } from '../plugin/tls-keys'
import { turnBuffered } from './stdout'

let channel: Channel | null = null

function send (message: WorkerMessage | FatalMessage): Promise<void> {
  return channel === null ? Promise.resolve() : channel.send(message)
}

/** Where this worker is in its life, for the supervisor's crash line. */
let phase: FatalMessage['phase'] = 'boot'
/** Set once die() runs: a drain finishing meanwhile must not exit 0 first. */
let dying = false

/**
 * Ends the worker on an error, telling the supervisor first: it logs the
 * error with the slot (or, at boot, makes it the cause of
 * FST_REUSEPORT_WORKER_FAILED), so nothing is printed here unless nobody
 * listens.
 */
async function die (error: ErrorInfo): Promise<never> {
  dying = true
  if (channel?.open === true) {
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

async function flushed (fastify: FastifyInstance): Promise<void> {
  await new Promise<void>(resolve => {
    // pino's flush(cb); fastify's logger type does not declare it.
    const log = fastify.log as unknown as { flush?: (cb: (err?: Error) => void) => void }
    if (typeof log.flush !== 'function') return resolve()
    try { log.flush(() => resolve()) } catch { resolve() }
  })
  if (process.stdout.writableLength > 0) await new Promise(resolve => process.stdout.once('drain', resolve))
}

/** "2 http/1.1, 1 websocket" */
function describeOpen (closed: OpenConnections): string {
  return Object.entries(closed).filter(([, n]) => n > 0).map(([kind, n]) => `${n} ${kind}`).join(', ')
}

async function boot (config: WorkerConfig, counter: { requests: number }, tickets: WorkerTickets): Promise<FastifyInstance> {
  let app
  try {
    app = await loadApp(config.app)
  } catch (err) {
    return await die(await describeLoadError(err, config.app))
  }
  const logger = {
    level: config.logLevel,
    base: { pid: process.pid, slot: config.slot },
    // Not pino's default destination: it writes asynchronously, and with a
    // reader that cannot keep up (the supervisor pauses our pipe then) whole
    // lines went missing, 1 or 2 in 180. lib/worker/stdout.ts writes synchronously,
    // once per event-loop turn, and a slow reader slows this worker down.
    ...(config.prettyLogs ? { transport: { target: 'pino-pretty' } } : { stream: turnBuffered(1) })
  }
  const options: FastifyServerOptions = {
    logger,
    pluginTimeout: config.pluginTimeout,
    ...(config.bodyLimit !== undefined ? { bodyLimit: config.bodyLimit } : {}),
    ...(config.useOptions ? app.options : {})
  }
  const fastify = Fastify(options)
  // HTTP/2 sessions are listed nowhere by Node: the drain and rebalancing need them.
  trackSessions(fastify.server)
  // Only with --max-requests: nothing runs per request otherwise.
  if (config.countRequests) fastify.server.on('request', () => { counter.requests++ })
  await fastify.register(reuseport)
  await fastify.register(app.plugin, {
    ...(config.useOptions ? app.options : {}),
    ...(config.prefix ? { prefix: config.prefix } : {})
  })
  // An HTTPS server holds the supervisor's TLS ticket keys before it serves a connection.
  const tls = await tickets.serve(fastify.server)
  // Host and port come from the inherited slot fds, or, under the cluster
  // balancer, from the supervisor: listen() then goes through its cluster primary.
  await fastify.listen(config.listen ?? undefined)
  tickets.reapply(fastify.server)
  if (tls !== null) await send({ type: 'tls', mode: tls })
  return fastify
}

/**
 * Takes what the supervisor handed down out of reach of the app before it
 * loads: the environment variables (a process the app spawns while loading
 * must not inherit them), and the fds, marked close-on-exec (dup2() in the
 * spawning child cleared the flag, and libuv closes nothing on spawn).
 */
function takeHandDown (): { config: WorkerConfig | null, error: unknown } {
  const raw = JSON.parse(process.env[WORKER_ENV] ?? 'null') as WorkerConfig | null
  const config = raw === null ? null : withConfigDefaults(raw)
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
    process.stderr.write('fastify-reuseport: this is the worker runtime, started by "fastify-reuseport start"\n')
    process.exit(2)
  }
  channel = openChannel(config.control)
  // Listening already: the keys come right after spawn, while the app loads.
  const tickets = new WorkerTickets(channel)
  // Set once the app serves: until then, a supervisor that is gone leaves nothing to drain.
  let stop: (() => Promise<void>) | null = null
  // From here on, whatever the phase (issue 24): an orphan must not keep serving.
  watchSupervisor(channel, config.supervisorPid, () => {
    // Bounded by -g in every phase: a drain that cannot finish, or an app still loading, ends here.
    setTimeout(() => process.exit(0), stop === null ? 0 : config.graceMs).unref()
    if (stop !== null) void stop()
  })
  // Our stdout and stderr are pipes the supervisor reads (lib/supervisor/logs.ts): a
  // supervisor that is gone must not turn a log line into a crash mid-drain
  // (pino's own destination ignores EPIPE likewise).
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {})
  // The supervisor decides when a worker drains: Ctrl-C in a terminal reaches
  // the whole process group, and --drain-delay must keep workers serving.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => {})
  // Replaces Node's print-and-exit: the supervisor logs it, with the slot.
  // Once the app serves, a graceful crash (lib/crash.ts); before, at once.
  let crash: ((err: unknown) => void) | null = null
  process.on('uncaughtException', err => { if (crash !== null) crash(err); else void die(errorInfo(err)) })
  if (error !== null) return await die(errorInfo(error))
  // A supervisor too far apart (an old one, SIGHUP, a much newer dist/): its reload fails with this line.
  if (!protocolAccepted(config.protocol)) return await die(errorInfo(new FST_REUSEPORT_PROTOCOL(protocolMismatch('the supervisor', config.protocol))))

  const counter = { requests: 0 }
  let fastify: FastifyInstance
  try {
    fastify = await boot(config, counter, tickets)
  } catch (err) {
    return await die(errorInfo(err))
  }
  phase = 'serving'

  const stopHealth = reportHealth(fastify.server, { healthMs: config.healthMs, idleMs: config.heartbeatMs }, counter, tickets, m => { void send(m) })
  let stopping = false
  stop = async (): Promise<void> => {
    if (stopping) return
    stopping = true
    phase = 'draining'
    stopHealth()
    const { clean, closed } = await drain(fastify, { idleMs: config.idleMs, graceMs: config.graceMs })
    if (!clean) fastify.log.warn({ closed }, `drain grace period over: closed ${describeOpen(closed)}`)
    // Bounded: a connection drain() could not see (a raw upgrade) would hold
    // server.close() open; exiting closes it.
    await Promise.race([fastify.close(), new Promise(resolve => setTimeout(resolve, clean ? config.graceMs : 1000).unref())])
    // What process.stdout still buffers (the app's own writes; our stdout is
    // a non-blocking pipe) is lost at exit. Up to -g: the supervisor's SIGKILL
    // comes 1 s after that.
    await Promise.race([flushed(fastify), new Promise(resolve => setTimeout(resolve, config.graceMs).unref())])
    if (!dying) process.exit(0)
  }
  crash = crashHandler({
    graceMs: config.crashGraceMs,
    die,
    drain: async graceMs => {
      // Already draining (told to, or orphaned): that drain goes on, bounded by the crash grace now.
      if (stopping) return await new Promise(() => {})
      stopping = true
      phase = 'draining'
      stopHealth()
      await drain(fastify, { idleMs: config.idleMs, graceMs })
    },
    report: async error => {
      dying = true
      await send({ type: 'fatal', phase, error })
      await send({ type: 'crashing' })
    }
  })
  channel.on('message', (message: SupervisorMessage) => {
    if (message.type === 'drain') void stop?.()
    else if (message.type === 'shed' && !stopping) shed(fastify.server, message.count, { idleMs: config.idleMs })
  })
  channel.unref()
  // A connection from the queue of a slot that has no worker right now
  // (lib/supervisor/handoff.ts). Node's IPC channel carries it: only it passes sockets.
  process.on('message', (message: unknown, socket?: net.Socket) => {
    if (socket !== undefined && (message as { type?: unknown } | null)?.type === HANDOFF) {
      // Even while draining: it is answered with Connection: close, not reset.
      fastify.server.emit('connection', socket)
    }
  })
  const addresses = fastify.addresses().map(a => typeof a === 'string' ? a : `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`)
  await send({ type: 'ready', addresses, protocol: PROTOCOL })
}

void main()
