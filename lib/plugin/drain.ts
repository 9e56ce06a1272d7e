import type http from 'node:http'
import type http2 from 'node:http2'
import net from 'node:net'
import type { FastifyInstance } from 'fastify'
import { connectionCount, isHttp2, openSockets, type DrainableServer as CountedServer } from './connections'
import { kContexts, kDrainHooks, kListeners, kSessions } from './symbols'

interface DrainableServer extends CountedServer {
  [kDrainHooks]?: DrainHook[]
  [kContexts]?: FastifyInstance[]
}

/** A function the app registers with fastify.onDrain(). */
export type DrainHook = (instance: FastifyInstance) => Promise<void> | void

/** What a drain found still open at the grace deadline, by kind. */
export interface OpenConnections {
  'http/1.1': number
  'http/2': number
  websocket: number
  /** Connections none of the above accounts for (a raw upgrade, a socket an app took over). */
  other: number
}

export interface DrainOptions {
  /** Close a kept-alive connection once it has been idle this long. */
  idleMs: number
  /** Give up waiting for connections after this long. */
  graceMs: number
}

export interface DrainResult {
  /** Every connection ended before the grace deadline. */
  clean: boolean
  /** Closed at the deadline, by kind (all zero when clean). */
  closed: OpenConnections
}

const WS_GOING_AWAY = 1001
const WS_OPEN = 1

/**
 * fastify.onDrain(hook): runs when this worker starts draining, while it
 * still serves its in-flight requests, so that the app can tell its
 * long-lived streams to reconnect (they would reach the new worker).
 */
export function decorateDrain (fastify: FastifyInstance): void {
  if (fastify.hasDecorator('onDrain')) return
  const server = fastify.server as DrainableServer
  server[kDrainHooks] ??= []
  // Every plugin context, at boot only: an app's @fastify/websocket decorates
  // its own context (its websocketServer is not on the root instance).
  const contexts: FastifyInstance[] = server[kContexts] ??= [fastify]
  fastify.addHook('onRegister', instance => { contexts.push(instance) })
  fastify.decorate('onDrain', function (this: FastifyInstance, hook: DrainHook) {
    if (typeof hook !== 'function') throw new TypeError(`onDrain expects a function, received ${typeof hook}`)
    const instance = this
    ;(server[kDrainHooks] as DrainHook[]).push(() => hook.call(instance, instance))
    return this
  })
}

/** A Server-Sent Events response whose headers are out: it never ends by itself. */
function isEventStream (contentType: unknown, headersSent: boolean): boolean {
  return headersSent && typeof contentType === 'string' && contentType.toLowerCase().startsWith('text/event-stream')
}

function ignore (): void {}

/**
 * The Content-Type a response sent. Headers given to writeHead() as an
 * object are not kept for getHeader() (lib/_http_outgoing.js), only in the
 * header block already written.
 */
function contentTypeSent (res: http.ServerResponse): unknown {
  const header = (res as http.ServerResponse & { _header?: string | null })._header
  const match = typeof header === 'string' ? /\r\ncontent-type:[ \t]*([^\r\n]*)/i.exec(header) : null
  return match?.[1] ?? res.getHeader('content-type')
}

type ServerStream = http2.ServerHttp2Stream & Record<symbol, unknown>

/** A session's open streams, from Node's private map (lib/internal/http2/core.js, kState.streams). */
function streamsOf (session: http2.ServerHttp2Session): ServerStream[] {
  const symbol = Object.getOwnPropertySymbols(session).find(s => s.description === 'state')
  const state = symbol === undefined ? undefined : (session as unknown as Record<symbol, { streams?: { values?: () => Iterable<unknown> } }>)[symbol]
  // A SafeMap, from Node's primordials: not instanceof Map.
  return typeof state?.streams?.values === 'function' ? [...state.streams.values()] as ServerStream[] : []
}

/** Ends an HTTP/2 event stream cleanly (END_STREAM), through its compat response when it has one. */
function endEventStream (stream: ServerStream): void {
  if (stream.destroyed || stream.closed || !isEventStream(stream.sentHeaders?.['content-type'], stream.headersSent)) return
  const symbol = Object.getOwnPropertySymbols(stream).find(s => s.description === 'response')
  const response = symbol === undefined ? undefined : stream[symbol] as http2.Http2ServerResponse | undefined
  // As for HTTP/1: an app still writing after this end must not crash the worker.
  stream.on('error', ignore)
  if (response !== undefined) {
    response.on('error', ignore)
    response.end()
  } else {
    stream.end()
  }
}

/**
 * GOAWAY (session.close()): streams in flight finish, the session closes
 * after them, and the client opens its next stream on a new connection,
 * which the new worker accepts. RFC 9113 6.8 suggests a first GOAWAY with the
 * largest stream id, so that streams already on the wire are still served;
 * Node offers no such notice (nghttp2_submit_shutdown_notice), and nghttp2
 * stops accepting streams after any other GOAWAY it sends (measured: a
 * GOAWAY with 2^31-1 then close() only delayed the refusals). A stream that
 * crosses the GOAWAY is refused (REFUSED_STREAM, above the last stream id):
 * unprocessed, which clients retry (RFC 9113 8.7; browsers and undici do).
 */
function goAway (session: http2.ServerHttp2Session): void {
  if (session.closed || session.destroyed) return
  session.close()
}

interface WebSocketLike { readyState: number, close (code?: number, reason?: string): void, terminate (): void }
interface WebSocketServerLike { clients?: Set<WebSocketLike>, on (event: 'connection', listener: (ws: WebSocketLike) => void): unknown }

/** The servers of @fastify/websocket, in whichever plugin contexts the app registered it. */
function websocketServers (fastify: FastifyInstance): WebSocketServerLike[] {
  const found = new Set<WebSocketServerLike>()
  for (const context of (fastify.server as DrainableServer)[kContexts] ?? [fastify]) {
    const wss = (context as unknown as { websocketServer?: WebSocketServerLike }).websocketServer
    if (wss !== undefined && wss !== null && typeof wss.on === 'function') found.add(wss)
  }
  return [...found]
}

async function runHooks (fastify: FastifyInstance, limitMs: number): Promise<void> {
  const hooks = (fastify.server as DrainableServer)[kDrainHooks] ?? []
  if (hooks.length === 0) return
  let timer: NodeJS.Timeout | undefined
  const results = Promise.allSettled(hooks.map(async hook => { await hook(fastify) }))
  const limit = new Promise<'late'>(resolve => { timer = setTimeout(resolve, limitMs, 'late') })
  const outcome = await Promise.race([results, limit])
  clearTimeout(timer)
  if (outcome === 'late') {
    fastify.log.warn(`onDrain hooks still running after ${limitMs} ms; closing long-lived connections anyway`)
    return
  }
  for (const r of outcome) if (r.status === 'rejected') fastify.log.error({ err: r.reason }, 'onDrain hook failed')
}

/**
 * Drains a worker without failing a request (docs/design.md, "Draining"), for
 * every server type fastify makes (http, https, http2 with and without TLS
 * and allowHTTP1), and never calls a method a server type lacks:
 * - stop accepting, on this process's copies of the listeners only;
 * - HTTP/1.1: answer every further request with Connection: close, and close
 *   a kept-alive connection only after it has been idle for idleMs;
 * - HTTP/2: GOAWAY on every session, so its next stream goes elsewhere;
 * - long-lived: the app's onDrain hooks run, then WebSockets made through
 *   @fastify/websocket are closed with 1001 (going away) and event streams
 *   are ended, so that their clients reconnect to the new worker at once;
 * - resolve once no connection is left, or at the grace deadline, where
 *   whatever is still open is closed and counted by kind.
 * Nothing here runs before the drain starts.
 */
export async function drain (fastify: FastifyInstance, { idleMs, graceMs }: DrainOptions): Promise<DrainResult> {
  const server = fastify.server as DrainableServer
  const deadline = Date.now() + graceMs
  // net.Server's close, not the subclass's: http.Server's also closes idle
  // keep-alive connections at once (Node >= 19, httpServerPreClose), racing
  // the client's next request on them; Http2Server's (Node >= 24) closes sessions.
  if (server.listening) net.Server.prototype.close.call(server)
  for (const extra of server[kListeners] ?? []) if (extra.listening) extra.close()

  // HTTP/1.1, also on an allowHTTP1 server; HTTP/2 compat requests have no keep-alive to stop.
  server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (req.httpVersionMajor !== 1) return
    res.shouldKeepAlive = false
    // An idle connection got an idle timeout below; a request on it must not inherit it.
    req.socket.setTimeout(server.timeout ?? 0)
  })
  // Responses finishing from now on arm Node's own keep-alive timer with this.
  server.keepAliveTimeout = Math.min(server.keepAliveTimeout || idleMs, idleMs)
  const sockets = openSockets(server)
  for (const socket of sockets ?? []) {
    const res = socket._httpMessage
    if (res) {
      if (!res.headersSent) res.shouldKeepAlive = false
    } else {
      // Idle now: destroyed by Node's socket-timeout handler unless a request comes first.
      socket.setTimeout(idleMs)
    }
  }

  const sessions = server[kSessions]
  if (sessions !== undefined) {
    for (const session of sessions) goAway(session)
    // A connection accepted just before the listener closed becomes a session only now.
    server.on('session', (session: http2.ServerHttp2Session) => setImmediate(() => goAway(session)))
  }

  const wsServers = websocketServers(fastify)
  const longLived = (async () => {
    await runHooks(fastify, Math.min(graceMs, 1000))
    for (const wss of wsServers) {
      for (const ws of wss.clients ?? []) if (ws.readyState === WS_OPEN) ws.close(WS_GOING_AWAY, 'server draining')
      // An upgrade on a kept-alive connection can still arrive.
      wss.on('connection', ws => ws.close(WS_GOING_AWAY, 'server draining'))
    }
    // Event streams after the hooks, which may want to send a last event on them.
    for (const session of sessions ?? []) for (const stream of streamsOf(session)) endEventStream(stream)
    for (const socket of openSockets(server) ?? []) {
      const res = socket._httpMessage
      if (res && !res.writableEnded && isEventStream(contentTypeSent(res), res.headersSent)) {
        // The app's own writer may not have stopped yet: a write after this
        // end is its mistake to ignore, not a reason to crash the worker.
        res.on('error', ignore)
        res.end()
      }
    }
  })()

  const servers: net.Server[] = [server, ...(server[kListeners] ?? [])]
  const open = async (): Promise<number> => (await Promise.all(servers.map(connectionCount))).reduce((a, b) => a + b, 0)
  let nextIdleSweep = Date.now() + idleMs
  while (await open() > 0 && Date.now() < deadline) {
    // Without Node's list, idle HTTP/1 connections are found only as they are now.
    if (sockets === null && typeof server.closeIdleConnections === 'function' && Date.now() >= nextIdleSweep) {
      server.closeIdleConnections()
      nextIdleSweep = Date.now() + idleMs
    }
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  await longLived
  const total = await open()
  const closed: OpenConnections = { 'http/1.1': 0, 'http/2': 0, websocket: 0, other: 0 }
  if (total === 0) return { clean: true, closed }

  const remaining = openSockets(server)
  for (const socket of remaining ?? []) {
    closed['http/1.1']++
    socket.destroy()
  }
  // Without Node's list, what is left is counted as other.
  if (remaining === null && !isHttp2(server) && typeof (server as Partial<http.Server>).closeAllConnections === 'function') {
    (server as unknown as http.Server).closeAllConnections()
  }
  for (const session of sessions ?? []) {
    if (session.destroyed) continue
    closed['http/2']++
    session.destroy()
  }
  for (const ws of wsServers.flatMap(wss => [...wss.clients ?? []])) {
    closed.websocket++
    ws.terminate()
  }
  closed.other = Math.max(0, total - closed['http/1.1'] - closed['http/2'] - closed.websocket)
  return { clean: false, closed }
}
