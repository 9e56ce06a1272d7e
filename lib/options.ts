import path from 'node:path'
import { FST_REUSEPORT_INVALID_OPTION } from './errors'
import { parsePort } from './listener'
import { parseSize } from './policy'

export interface FastifyReuseportOptions {
  /** listen(2) backlog for sockets the plugin opens; a listen() `backlog` wins. Default 511, as Node. */
  backlog?: number
  /** For `::`, accept IPv6 only instead of dual-stack. Default false. */
  ipv6Only?: boolean
}

export interface ResolvedOptions {
  backlog: number
  ipv6Only: boolean
}

const KNOWN = new Set(['backlog', 'ipv6Only'])

/** How an error message shows the value it received. */
export function received (value: unknown): string {
  if (typeof value === 'string') return `'${value}'`
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value)
  return Array.isArray(value) ? 'an array' : `type ${typeof value}`
}

export function validateBacklog (value: unknown, name = 'backlog'): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
    throw new FST_REUSEPORT_INVALID_OPTION(name, 'must be a non-negative integer', received(value))
  }
  return value
}

/** Validates plugin options at register time, naming the option and the value received. */
export function resolveOptions (opts: unknown): ResolvedOptions {
  if (opts === undefined || opts === null) opts = {}
  if (typeof opts !== 'object' || Array.isArray(opts)) {
    throw new FST_REUSEPORT_INVALID_OPTION('options', 'must be an object', received(opts))
  }
  const o = opts as Record<string, unknown>
  for (const key of Object.keys(o)) {
    // fastify passes its own register options (prefix, ...) through to plugins.
    if (!KNOWN.has(key) && key !== 'prefix' && key !== 'logLevel' && key !== 'logSerializers') {
      throw new FST_REUSEPORT_INVALID_OPTION(key, 'is not an option of fastify-reuseport (known: backlog, ipv6Only)', received(o[key]))
    }
  }
  const backlog = o.backlog === undefined ? 511 : validateBacklog(o.backlog)
  if (o.ipv6Only !== undefined && typeof o.ipv6Only !== 'boolean') {
    throw new FST_REUSEPORT_INVALID_OPTION('ipv6Only', 'must be a boolean', received(o.ipv6Only))
  }
  return { backlog, ipv6Only: o.ipv6Only === true }
}


/** Options of start() and of the CLI's flags. */
export interface StartOptions {
  /** Path of the app file: a Fastify plugin, CommonJS or ESM. */
  app: string
  /** Worker count, or 'auto' (default): the CPUs this process may use. */
  workers?: number | 'auto'
  port?: number | string
  /** Default 'localhost' (every loopback address), as fastify. */
  host?: string
  backlog?: number
  ipv6Only?: boolean
  logLevel?: string
  prettyLogs?: boolean
  /** fastify-cli's -o: use the app's exported `options`. */
  options?: boolean
  prefix?: string
  pluginTimeout?: number
  bodyLimit?: number
  /** Node options for every worker, before the worker script: ['--require', './tracing.js'], ['--import', 'x']. */
  preload?: string[]
  /** How long a draining worker may take before it is killed, ms. Default 10000. */
  closeGraceDelay?: number
  /** How long a new worker may take to become ready, ms. Default 30000. */
  readyTimeout?: number
  /** When retiring a slot, how long to wait for handshakes in flight on it after its accept queue is empty, ms. Default 2000. */
  handshakeGrace?: number
  /** A slot whose worker's event loop is this late (or silent this long) is steered out, ms. 0 disables. Default 500. */
  stallTimeout?: number
  /** A slot whose accept queue holds this many connections while its worker accepts none is steered out. Default 32. */
  stallQueue?: number
  /** A worker that sends no health report for this long is killed and replaced on its slot, ms. 0 disables. Default 30000. */
  workerTimeout?: number
  /** Replace a worker gracefully once its RSS passes this: bytes, or '512M', '1G'. Default: no limit. */
  maxMemory?: number | string
  /** Replace a worker gracefully after it has served this many requests. 0 (default): never. */
  maxRequests?: number
  /** Add a random 0..n to each worker's maxRequests, so that workers do not recycle together. Default 0. */
  maxRequestsJitter?: number
  /** Exit (the 'fatal' event, then close) when no slot has served for this long, ms. 0 disables. Default 30000. */
  crashLoopTimeout?: number
  /**
   * A worker that throws an uncaught exception stops accepting, is replaced at
   * once, and answers what it has in flight for up to this long before it
   * exits, ms. 0: it exits at once, as Node does. Default 1000.
   */
  crashGrace?: number
  /** Serve Prometheus metrics on this port (GET /metrics), on `host`. Off by default. */
  metricsPort?: number
  /**
   * How connections reach workers: 'reuseport' (a socket per slot, Linux with
   * the addon) or 'cluster' (Node's cluster round-robin: the supervisor
   * accepts every connection). Default: reuseport where it works, else cluster.
   */
  balancer?: Balancer
  /**
   * Even out connections across slots: steer new ones to the slots holding
   * fewer, and ask a slot that holds more than its share of a few
   * long-lived connections to end some kept-alive ones gracefully. Default true.
   */
  balance?: boolean
  /**
   * Aborting it while start() runs shuts the supervisor down, and start()
   * rejects once every worker it spawned has exited: a SIGTERM while workers
   * boot must not leave them behind (issue 24).
   */
  signal?: AbortSignal
  /**
   * Join a port another process already listens on (its SO_REUSEPORT group),
   * sharing its traffic: for blue/green hand-overs. Default false: such a
   * port is refused with EADDRINUSE, as `fastify start` would (lib/port-probe.ts).
   */
  join?: boolean
}

export type Balancer = 'reuseport' | 'cluster'
export const BALANCERS: readonly Balancer[] = ['reuseport', 'cluster']

/** start()'s options, validated, with their defaults. */
export interface StartSettings {
  app: string
  workers: number | 'auto'
  host: string
  port: number
  backlog: number
  ipv6Only: boolean
  logLevel: string
  prettyLogs: boolean
  useOptions: boolean
  prefix: string | undefined
  pluginTimeout: number
  bodyLimit: number | undefined
  preload: string[]
  graceMs: number
  readyTimeout: number
  handshakeGrace: number
  stallTimeout: number
  stallQueue: number
  workerTimeout: number
  maxMemory: number
  maxRequests: number
  maxRequestsJitter: number
  crashLoopTimeout: number
  crashGraceMs: number
  join: boolean
  metricsPort: number | undefined
  /** undefined: reuseport where it works. */
  balancer: Balancer | undefined
  balance: boolean
}

function integer (name: string, value: unknown, fallback: number, min = 0): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new FST_REUSEPORT_INVALID_OPTION(name, `must be an integer >= ${min}`, received(value))
  }
  return value
}

function bool (name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw new FST_REUSEPORT_INVALID_OPTION(name, 'must be a boolean', received(value))
  return value
}

function balancer (value: unknown): Balancer | undefined {
  if (value === undefined || BALANCERS.includes(value as Balancer)) return value as Balancer | undefined
  throw new FST_REUSEPORT_INVALID_OPTION('balancer', `must be one of ${BALANCERS.join(', ')}`, received(value))
}

/** Validates start()'s options, naming the option and the value received. */
export function resolveStartOptions (options: unknown): StartSettings {
  if (typeof options !== 'object' || options === null) throw new FST_REUSEPORT_INVALID_OPTION('options', 'must be an object', received(options))
  const o = options as StartOptions
  if (typeof o.app !== 'string' || o.app === '') throw new FST_REUSEPORT_INVALID_OPTION('app', 'must be the path of an app file', received(o.app))
  const host = o.host ?? 'localhost'
  if (typeof host !== 'string') throw new FST_REUSEPORT_INVALID_OPTION('host', 'must be a string', received(host))
  if (o.preload !== undefined && (!Array.isArray(o.preload) || !o.preload.every(a => typeof a === 'string'))) {
    throw new FST_REUSEPORT_INVALID_OPTION('preload', 'must be an array of strings', received(o.preload))
  }
  let maxMemory = 0
  if (typeof o.maxMemory === 'string') {
    maxMemory = parseSize(o.maxMemory) ?? Number.NaN
    if (Number.isNaN(maxMemory)) throw new FST_REUSEPORT_INVALID_OPTION('maxMemory', 'must be a size such as 512M or 1G', received(o.maxMemory))
  } else {
    maxMemory = integer('maxMemory', o.maxMemory, 0)
  }
  return {
    app: path.resolve(o.app),
    workers: o.workers === undefined || o.workers === 'auto' ? 'auto' : integer('workers', o.workers, 1, 1),
    host,
    port: parsePort(o.port ?? 3000),
    backlog: o.backlog === undefined ? 511 : validateBacklog(o.backlog),
    ipv6Only: o.ipv6Only === true,
    logLevel: o.logLevel ?? 'info',
    prettyLogs: o.prettyLogs === true,
    useOptions: o.options === true,
    prefix: o.prefix,
    pluginTimeout: integer('pluginTimeout', o.pluginTimeout, 10000),
    bodyLimit: o.bodyLimit === undefined ? undefined : integer('bodyLimit', o.bodyLimit, 0, 1),
    preload: o.preload ?? [],
    graceMs: integer('closeGraceDelay', o.closeGraceDelay, 10000),
    readyTimeout: integer('readyTimeout', o.readyTimeout, 30000, 1),
    handshakeGrace: integer('handshakeGrace', o.handshakeGrace, 2000),
    stallTimeout: integer('stallTimeout', o.stallTimeout, 500),
    stallQueue: integer('stallQueue', o.stallQueue, 32, 1),
    workerTimeout: integer('workerTimeout', o.workerTimeout, 30000),
    maxMemory,
    maxRequests: integer('maxRequests', o.maxRequests, 0),
    maxRequestsJitter: integer('maxRequestsJitter', o.maxRequestsJitter, 0),
    crashLoopTimeout: integer('crashLoopTimeout', o.crashLoopTimeout, 30000),
    crashGraceMs: integer('crashGrace', o.crashGrace, 1000),
    join: bool('join', o.join, false),
    metricsPort: o.metricsPort === undefined ? undefined : parsePort(o.metricsPort),
    balancer: balancer(o.balancer),
    balance: bool('balance', o.balance, true)
  }
}
