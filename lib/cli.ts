#!/usr/bin/env node
import fs from 'node:fs'
import { parseArgs } from 'node:util'
import closeWithGrace from 'close-with-grace'
import { FST_REUSEPORT_INVALID_ARGUMENT } from './errors'
import type { Logger } from 'pino'
import { BALANCERS, type Balancer } from './options'
import { followParent } from './parent'
import { parseSize } from './policy'
import { makeLogger, start, type StartOptions } from './supervisor'

const HELP = `Usage: fastify-reuseport start [options] <app-file>

Runs a Fastify app (a plugin file, as for "fastify start") on N worker
processes, each serving its own SO_REUSEPORT socket. The supervisor owns the
sockets, so restarts and crashes reset no connection.

Options (fastify start compatible):
  -p, --port <port>              Port to listen on (default 3000)        [env: FASTIFY_PORT or PORT]
  -a, --address <host>           Address to listen on (default localhost,
                                 0.0.0.0 inside Docker or Kubernetes)    [env: FASTIFY_ADDRESS]
  -l, --log-level <level>        Log level of the workers (default fatal) and of
                                 the supervisor (default info)          [env: FASTIFY_LOG_LEVEL]
  -o, --options                  Use the app's exported options         [env: FASTIFY_OPTIONS]
  -g, --close-grace-delay <ms>   How long a draining worker may take before it
                                 is killed (default 10000)              [env: FASTIFY_CLOSE_GRACE_DELAY]
  -T, --plugin-timeout <ms>      Plugin load timeout (default 10000)    [env: FASTIFY_PLUGIN_TIMEOUT]
  -x, --prefix <prefix>          Route prefix for the app               [env: FASTIFY_PREFIX]
  -P, --pretty-logs              Pretty logs (pino-pretty)              [env: FASTIFY_PRETTY_LOGS]
      --body-limit <bytes>       Maximum request body size              [env: FASTIFY_BODY_LIMIT]
  -r, --require <module>         Preload a CommonJS module in every worker
                                 (repeatable), e.g. tracing            [env: FASTIFY_REQUIRE]
  -i, --import <module>          Preload an ES module in every worker (repeatable)
                                                                        [env: FASTIFY_IMPORT]

Options (fastify-reuseport):
  -w, --workers <n|auto>         Worker processes (default auto: the CPUs this
                                 process may use, after cgroup cpu.max and
                                 CPU affinity)                          [env: FASTIFY_WORKERS]
      --backlog <n>              listen(2) backlog per slot (default 511) [env: FASTIFY_BACKLOG]
      --drain-delay <ms>         On SIGTERM/SIGINT, keep serving this long before
                                 draining, so load balancers notice (default 0)
                                                                        [env: FASTIFY_DRAIN_DELAY]
      --ready-timeout <ms>       How long a new worker may take to be ready
                                 (default 30000)                        [env: FASTIFY_READY_TIMEOUT]
      --handshake-grace <ms>     When a slot is retired (SIGTTOU), how long its
                                 handshakes in flight get to complete after its
                                 accept queue is empty (default 2000)  [env: FASTIFY_HANDSHAKE_GRACE]
      --stall-timeout <ms>       Steer new connections away from a worker whose
                                 event loop is this late; 0 disables (default 500)
                                                                        [env: FASTIFY_STALL_TIMEOUT]
      --worker-timeout <ms>      Kill and replace a worker whose event loop has
                                 sent no health report for this long; its
                                 queued connections wait for the next worker.
                                 0 disables (default 30000)            [env: FASTIFY_WORKER_TIMEOUT]
      --max-memory <size>        Replace a worker gracefully once its RSS passes
                                 this (512M, 1G; default: no limit)    [env: FASTIFY_MAX_MEMORY]
      --max-requests <n>         Replace a worker gracefully after n requests
                                 (default 0: never)                    [env: FASTIFY_MAX_REQUESTS]
      --max-requests-jitter <n>  Add a random 0..n to each worker's
                                 --max-requests (default 0)            [env: FASTIFY_MAX_REQUESTS_JITTER]
      --crash-loop-timeout <ms>  Exit 1 when no worker has served for this long
                                 (every slot keeps crashing), so that Docker or
                                 Kubernetes restarts the container; 0 disables
                                 (default 30000)                       [env: FASTIFY_CRASH_LOOP_TIMEOUT]
      --crash-grace <ms>         A worker with an uncaught exception stops
                                 accepting, is replaced at once, and answers
                                 what it has in flight for up to this long
                                 before it exits; 0: exit at once (default 1000)
                                                                        [env: FASTIFY_CRASH_GRACE]
      --join                     Share the port with another process already
                                 listening on it (a blue/green hand-over); by
                                 default a busy port is refused with EADDRINUSE
                                                                        [env: FASTIFY_JOIN]
      --balancer <mode>          reuseport: a socket per worker, balanced by the
                                 kernel (Linux with the addon); cluster: Node's
                                 cluster round-robin, the supervisor accepts every
                                 connection (default: reuseport where it works,
                                 else cluster)                          [env: FASTIFY_BALANCER]
      --balance <on|off>         Even out connections across workers: steer new
                                 ones to the workers holding fewer, and have a
                                 worker holding more than its share of a few
                                 long-lived connections end some kept-alive
                                 ones at their next response (default on)
                                                                        [env: FASTIFY_BALANCE]
      --metrics-port <port>      Serve Prometheus metrics per slot at
                                 http://<address>:<port>/metrics (default off)
                                                                        [env: FASTIFY_METRICS_PORT]
  -h, --help                     Show this help

Signals:
  SIGHUP            rolling restart: each slot gets a new worker (the app is
                    re-read from disk) before the old one drains
  SIGTERM, SIGINT   graceful shutdown: drain delay, drain every worker, exit 0;
                    a second signal exits at once with code 1
  SIGTTIN           add a worker slot
  SIGTTOU           retire the last worker slot: steer it out, serve what is
                    queued on it, then close it (never the last slot)
`

const OPTIONS = {
  port: { type: 'string', short: 'p' },
  address: { type: 'string', short: 'a' },
  'log-level': { type: 'string', short: 'l' },
  options: { type: 'boolean', short: 'o' },
  'close-grace-delay': { type: 'string', short: 'g' },
  'plugin-timeout': { type: 'string', short: 'T' },
  prefix: { type: 'string', short: 'x' },
  'pretty-logs': { type: 'boolean', short: 'P' },
  'body-limit': { type: 'string' },
  require: { type: 'string', short: 'r', multiple: true },
  import: { type: 'string', short: 'i', multiple: true },
  workers: { type: 'string', short: 'w' },
  backlog: { type: 'string' },
  'drain-delay': { type: 'string' },
  'ready-timeout': { type: 'string' },
  'handshake-grace': { type: 'string' },
  'stall-timeout': { type: 'string' },
  'metrics-port': { type: 'string' },
  'worker-timeout': { type: 'string' },
  'max-memory': { type: 'string' },
  'max-requests': { type: 'string' },
  'max-requests-jitter': { type: 'string' },
  'crash-loop-timeout': { type: 'string' },
  'crash-grace': { type: 'string' },
  join: { type: 'boolean' },
  balancer: { type: 'string' },
  balance: { type: 'string' },
  help: { type: 'boolean', short: 'h' }
} as const

type Name = keyof typeof OPTIONS

export interface CliConfig {
  start: StartOptions & { logger: Logger }
  drainDelay: number
}

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])

function bad (message: string): never {
  throw new FST_REUSEPORT_INVALID_ARGUMENT(message)
}

function envName (name: Name): string {
  return 'FASTIFY_' + name.toUpperCase().replace(/-/g, '_')
}

function integer (name: string, value: string, min: number): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < min) bad(`--${name} must be an integer >= ${min}, received '${value}'`)
  return Number(value)
}

/** Runs in a container, where fastify-cli listens on 0.0.0.0 (is-docker, isKubernetes). */
function inContainer (env: NodeJS.ProcessEnv): boolean {
  if (env.KUBERNETES_SERVICE_HOST !== undefined) return true
  if (fs.existsSync('/.dockerenv') || fs.existsSync('/run/.containerenv')) return true
  try {
    return /docker|kubepods|containerd/.test(fs.readFileSync('/proc/self/cgroup', 'utf8'))
  } catch {
    return false
  }
}

/** Parses `start [options] <app>`; flags win over FASTIFY_* variables, as in fastify-cli. */
export function parseCli (argv: string[], env: NodeJS.ProcessEnv = process.env): CliConfig | 'help' {
  const [command, ...rest] = argv
  if (command === '--help' || command === '-h' || command === 'help') return 'help'
  if (command !== 'start') bad(command === undefined ? 'missing command: use "fastify-reuseport start <app-file>"' : `unknown command '${command}': use "fastify-reuseport start <app-file>"`)
  let parsed
  try {
    parsed = parseArgs({ args: rest, options: OPTIONS, allowPositionals: true, strict: true })
  } catch (err) {
    // Node's own text goes on to explain '--' for positionals: the first sentence says it all.
    bad((err as Error).message.split(/\.\s/)[0] as string)
  }
  const { values, positionals } = parsed
  if (values.help) return 'help'
  const list = (name: 'require' | 'import'): string[] => values[name] ?? (env[envName(name)] ? [env[envName(name)] as string] : [])
  const get = (name: Exclude<Name, 'require' | 'import'>): string | undefined => {
    const v = values[name]
    if (typeof v === 'string') return v
    const e = env[envName(name)]
    return e === undefined || e === '' ? undefined : e
  }
  const flag = (name: Exclude<Name, 'require' | 'import'>): boolean => values[name] === true || /^(1|true|yes)$/i.test(env[envName(name)] ?? '')
  if (positionals.length !== 1) bad(positionals.length === 0 ? 'missing the app file: fastify-reuseport start [options] <app-file>' : `expected one app file, received ${positionals.join(' ')}`)

  const portText = get('port') ?? env.PORT ?? '3000'
  const port = integer('port', portText, 0)
  if (port > 65535) bad(`--port must be an integer from 0 to 65535, received '${portText}'`)
  const workersText = get('workers') ?? 'auto'
  const workers = workersText === 'auto' ? 'auto' : integer('workers', workersText, 1)
  const logLevel = get('log-level')
  if (logLevel !== undefined && !LEVELS.has(logLevel)) bad(`--log-level must be one of ${[...LEVELS].join(', ')}, received '${logLevel}'`)
  const num = (name: Exclude<Name, 'require' | 'import'>, min = 0): number | undefined => {
    const v = get(name)
    return v === undefined ? undefined : integer(name, v, min)
  }
  const size = (name: 'max-memory'): number | undefined => {
    const v = get(name)
    if (v === undefined) return undefined
    return parseSize(v) ?? bad(`--${name} must be a size such as 512M or 1G, received '${v}'`)
  }
  const balancer = (v: string | undefined): Balancer | undefined => {
    if (v === undefined || BALANCERS.includes(v as Balancer)) return v as Balancer | undefined
    return bad(`--balancer must be one of ${BALANCERS.join(', ')}, received '${v}'`)
  }
  const onOff = (name: 'balance'): boolean | undefined => {
    const v = get(name)
    if (v === undefined) return undefined
    if (/^(on|true|1|yes)$/i.test(v)) return true
    if (/^(off|false|0|no)$/i.test(v)) return false
    return bad(`--${name} must be on or off, received '${v}'`)
  }
  const app = positionals[0] as string
  return {
    start: {
      app,
      workers,
      port,
      host: get('address') ?? (inContainer(env) ? '0.0.0.0' : 'localhost'),
      // The app's logger defaults to fatal, as in fastify start; the supervisor's
      // own lines (slots, reloads, exits) show at info unless -l says otherwise.
      logLevel: logLevel ?? 'fatal',
      logger: makeLogger(logLevel ?? 'info', flag('pretty-logs')),
      prettyLogs: flag('pretty-logs'),
      options: flag('options'),
      prefix: get('prefix'),
      pluginTimeout: num('plugin-timeout'),
      bodyLimit: num('body-limit', 1),
      preload: [...list('require').map(m => ['--require', m]), ...list('import').map(m => ['--import', m])].flat(),
      closeGraceDelay: num('close-grace-delay'),
      readyTimeout: num('ready-timeout', 1),
      backlog: num('backlog'),
      handshakeGrace: num('handshake-grace'),
      stallTimeout: num('stall-timeout'),
      metricsPort: num('metrics-port'),
      workerTimeout: num('worker-timeout'),
      maxMemory: size('max-memory'),
      maxRequests: num('max-requests'),
      maxRequestsJitter: num('max-requests-jitter'),
      crashLoopTimeout: num('crash-loop-timeout'),
      crashGrace: num('crash-grace'),
      join: flag('join'),
      balancer: balancer(get('balancer')),
      balance: onOff('balance')
    },
    drainDelay: num('drain-delay') ?? 0
  }
}

/** Resolves once stdout has written everything queued (it is non-blocking on a pipe). */
function flushed (): Promise<void> {
  return new Promise(resolve => {
    if (process.stdout.writableLength === 0) resolve()
    else process.stdout.once('drain', () => resolve())
  })
}

function fail (err: Error & { code?: string }): never {
  const code = err.code ?? err.name
  const line = err.message.includes(code) ? err.message : `${code}: ${err.message}`
  // A worker's boot error follows its one line as Node would print it: a
  // SyntaxError's file:line and caret, a thrown error's stack. Our own codes
  // say all there is in the line.
  const c = err.cause as (Error & { code?: unknown }) | undefined
  const cause = c instanceof Error && typeof c.stack === 'string' && !String(c.code).startsWith('FST_REUSEPORT_') ? c.stack.replace(/\n*$/, '\n') : ''
  process.stderr.write(`fastify-reuseport: ${line}\n${cause}`)
  process.exit(err.code === 'FST_REUSEPORT_INVALID_ARGUMENT' ? 2 : 1)
}

async function main (): Promise<void> {
  let config: CliConfig | 'help'
  try {
    config = parseCli(process.argv.slice(2))
  } catch (err) {
    fail(err as Error)
  }
  if (config === 'help') {
    process.stdout.write(HELP)
    return
  }
  const { drainDelay } = config
  // Started by npm or npx: their exit is a SIGTERM to us (lib/parent.ts).
  const launcher = followParent()
  // A signal while the workers boot: Node's default action would end us at
  // once and leave them running (issue 24). SIGTERM and SIGINT shut down what
  // has started, a second one exits at once (the 'exit' listener kills the
  // workers); SIGHUP and the scale signals wait for the start.
  const abort = new AbortController()
  const early = (): void => { if (abort.signal.aborted) process.exit(1); abort.abort() }
  const wait = (): void => {}
  const earlySignals = { SIGTERM: early, SIGINT: early, SIGHUP: wait, SIGTTIN: wait, SIGTTOU: wait }
  for (const [signal, listener] of Object.entries(earlySignals)) process.on(signal, listener)
  const handle = await start({ ...config.start, signal: abort.signal }).catch(async (err: Error) => {
    if (!abort.signal.aborted) fail(err)
    // Shut down before it was ready: the workers have exited, as asked.
    await flushed()
    process.exit(0)
  })
  for (const [signal, listener] of Object.entries(earlySignals)) process.off(signal, listener)
  if (launcher !== null) config.start.logger.info({ launcher }, `started by ${launcher}: shutting down when it exits`)
  if (abort.signal.aborted) {
    await handle.close()
    await flushed()
    process.exit(0)
  }
  // Failures are logged by the supervisor, and the workers serving keep serving.
  // A crash loop: exit non-zero, so that the container's restart policy takes over.
  handle.once('fatal', err => {
    process.stderr.write(`fastify-reuseport: ${(err as Error & { code: string }).code}: ${err.message}\n`)
    // Lines still queued for a pipe are lost at process.exit.
    handle.once('close', () => { flushed().then(() => process.exit(1), () => process.exit(1)) })
  })
  const ignore = (): void => {}
  process.on('SIGHUP', () => { handle.reload().catch(ignore) })
  // Signals may come faster than slots start: count them against a target.
  let target = handle.slots().length
  process.on('SIGTTIN', () => { handle.scale(++target).catch(ignore) })
  process.on('SIGTTOU', () => {
    if (target > 1) handle.scale(--target).catch(ignore)
    else process.stderr.write('fastify-reuseport: SIGTTOU ignored: the last slot is never retired\n')
  })
  closeWithGrace({
    delay: drainDelay + (config.start.closeGraceDelay ?? 10000) + 5000,
    skip: ['SIGHUP', 'beforeExit'],
    logger: { error: (m: unknown) => process.stderr.write(`fastify-reuseport: ${String(m)}\n`) }
  }, async ({ err }) => {
    if (err) process.stderr.write(`fastify-reuseport: ${err.stack ?? err.message}\n`)
    await handle.close({ drainDelay })
    // close-with-grace exits next: lines still queued for a slow reader would be lost.
    await flushed()
  })
}

if (require.main === module) void main()
