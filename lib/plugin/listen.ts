import cluster from 'node:cluster'
import net from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { NativeBinding } from '../common/native'
import type { ResolvedOptions } from './options'
import { validateBacklog } from '../common/validate'
import { LISTENERS_ENV, closeListeners, inheritedListeners, openListeners, parsePort, resolveHost, type Listener } from '../common/listener'
import { kListeners, kPatched } from './symbols'
import { countConnections } from './connections'

type ListenFn = (...args: unknown[]) => net.Server

interface PatchedServer extends net.Server {
  [kPatched]?: true
  [kListeners]?: net.Server[]
}

interface TcpListenOptions {
  port?: number | string
  host?: string
  backlog?: number
  ipv6Only?: boolean
}

// The supervisor's fds serve one fastify instance per worker: the first
// listen() takes them. They are kept on globalThis under a registered symbol,
// so that every copy of this package loaded in the process (the worker's and
// the app's own) shares them; the worker runtime puts them there, out of the
// environment, before the app module loads.
const kInherited = Symbol.for('fastify-reuseport.inherited')
type InheritedStore = { [kInherited]?: Listener[] | null }

function readInherited (): Listener[] | null {
  const store = globalThis as InheritedStore
  if (store[kInherited] === undefined) {
    store[kInherited] = inheritedListeners()
    // They are this process's fds: a child it spawns must not think it has them.
    delete process.env[LISTENERS_ENV]
  }
  return store[kInherited] ?? null
}

function takeInherited (): Listener[] | null {
  const taken = readInherited()
  ;(globalThis as InheritedStore)[kInherited] = null
  return taken
}

/** The worker runtime hands its slot fds to the plugin this way, not through the environment the app sees. */
export function handDown (listeners: Listener[] | null): void {
  (globalThis as InheritedStore)[kInherited] = listeners
}

function isTcpOptions (value: unknown): value is TcpListenOptions {
  if (typeof value !== 'object' || value === null) return false
  const o = value as Record<string, unknown>
  return o.path == null && o.fd == null && o.handle == null && o._handle == null
}

/** True when this process was started by the supervisor with slot fds. */
export function isSupervised (): boolean {
  return readInherited() !== null
}

/**
 * A cluster worker's listen() goes through its cluster primary, which
 * balances: sockets of our own would bypass it (and the supervisor's cluster
 * balancer runs its workers this way).
 */
export function inClusterWorker (): boolean {
  return cluster.isWorker
}

/**
 * Makes fastify.server.listen({ port, host }) serve reuseport sockets: the
 * slot fds handed down by the supervisor, or sockets opened here. Other forms
 * (path, fd, handle) pass through untouched.
 */
export function patchListen (fastify: FastifyInstance, binding: NativeBinding | null, opts: ResolvedOptions): void {
  const server = fastify.server as PatchedServer
  if (server[kPatched]) return
  server[kPatched] = true
  const original = server.listen as ListenFn

  server.listen = function reuseportListen (this: net.Server, ...args: unknown[]): net.Server {
    const options = args[0]
    if (!isTcpOptions(options)) return original.apply(this, args)
    const cb = args.find(a => typeof a === 'function') as (() => void) | undefined
    if (cb) server.once('listening', cb)
    listen(fastify, server, original, binding, opts, options).catch(err => server.emit('error', err))
    return this
  } as typeof server.listen
}

async function listen (fastify: FastifyInstance, server: PatchedServer, original: ListenFn, binding: NativeBinding | null,
  opts: ResolvedOptions, options: TcpListenOptions): Promise<void> {
  let listeners = takeInherited()
  if (listeners !== null) {
    countConnections(server)
  } else if (binding === null) {
    original.call(server, options)
    return
  } else {
    const port = parsePort(options.port ?? 0)
    const backlog = options.backlog === undefined ? opts.backlog : validateBacklog(options.backlog)
    const addresses = await resolveHost(options.host ?? '::')
    listeners = openListeners(binding, addresses, { port, backlog, ipv6Only: options.ipv6Only ?? opts.ipv6Only })
  }

  const [primary, ...rest] = listeners as [Listener, ...Listener[]]
  // fastify binds the other addresses of 'localhost' itself, with plain
  // sockets, after looking up listenOptions.host again (lib/server.js,
  // multipleBindings). Point it at the address we bound, so that it finds
  // nothing left to bind; we serve the rest below, with reuseport sockets.
  options.host = primary.address
  options.port = primary.port

  let extras: net.Server[]
  try {
    extras = rest.map(l => serveExtra(server, l))
  } catch (err) {
    if (binding !== null) closeListeners(binding, listeners)
    throw err
  }
  server[kListeners] = extras
  server.once('close', () => { for (const e of extras) e.close() })
  bindingsOf(fastify)?.push(...extras)
  // Node reads backlog only positionally on the fd path and otherwise re-calls
  // listen(fd, 511), shrinking the queue we asked for (lib/net.js, listen).
  original.call(server, { fd: primary.fd }, primary.backlog)
}

/** A further address (::1 beside 127.0.0.1), whose connections the main server handles. */
function serveExtra (server: net.Server, l: Listener): net.Server {
  const extra = net.createServer({ noDelay: true })
  extra.on('connection', socket => server.emit('connection', socket))
  extra.on('error', err => server.emit('error', err))
  extra.listen({ fd: l.fd }, l.backlog)
  return extra
}

/** fastify.addresses() lists fastify's own secondary servers; ours belong there too. */
function bindingsOf (fastify: FastifyInstance): Array<{ address(): unknown }> | undefined {
  const symbol = Object.getOwnPropertySymbols(fastify).find(s => s.description === 'fastify.serverBindings')
  const value = symbol === undefined ? undefined : (fastify as unknown as Record<symbol, unknown>)[symbol]
  return Array.isArray(value) ? value : undefined
}
