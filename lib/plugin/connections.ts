// What the plugin knows of a server's connections, at no cost per request:
// how many it accepted, its HTTP/2 sessions (Node lists none), and Node's
// own list of HTTP/1 connections. The drain (drain.ts) and the rebalancing
// (lib/worker/shed.ts) read them.
import type http from 'node:http'
import type http2 from 'node:http2'
import type net from 'node:net'
import { kAccepted, kListeners, kSessions } from './symbols'

export interface DrainableServer extends net.Server {
  [kAccepted]?: number
  [kListeners]?: net.Server[]
  [kSessions]?: Set<http2.ServerHttp2Session>
  keepAliveTimeout?: number
  timeout?: number
  closeIdleConnections?: () => void
}

export type HttpSocket = net.Socket & { _httpMessage?: http.ServerResponse | null }

/** Counts accepted connections, for the slot metrics: one increment per connection, nothing per request. */
export function countConnections (server: net.Server): void {
  const s = server as DrainableServer
  if (s[kAccepted] !== undefined) return
  s[kAccepted] = 0
  server.on('connection', () => { s[kAccepted] = (s[kAccepted] as number) + 1 })
}

/** Connections accepted so far by a counted server. */
export function acceptedConnections (server: net.Server): number {
  return (server as DrainableServer)[kAccepted] ?? 0
}

/** Http2Server and Http2SecureServer (with or without allowHTTP1); their classes are not exported. */
export function isHttp2 (server: net.Server): boolean {
  return typeof (server as Partial<http2.Http2Server>).updateSettings === 'function'
}

/**
 * Keeps the open sessions of an HTTP/2 server, so that a drain can send each
 * a GOAWAY: Node keeps no list of them before v24 (and a private one since).
 * One Set entry per session, nothing per request; fastify itself adds a
 * 'session' listener of the same cost (http2SessionTimeout).
 */
export function trackSessions (server: net.Server): void {
  const s = server as DrainableServer
  if (!isHttp2(server) || s[kSessions] !== undefined) return
  const sessions = new Set<http2.ServerHttp2Session>()
  s[kSessions] = sessions
  server.on('session', (session: http2.ServerHttp2Session) => {
    sessions.add(session)
    session.once('close', () => sessions.delete(session))
  })
}

/**
 * The sockets of an HTTP/1 server's open connections, from the list Node
 * keeps for its own connection checks (lib/_http_server.js, kConnections;
 * Node >= 18.2; https.Server too, and Http2SecureServer with allowHTTP1).
 * Reading it at drain time costs nothing while serving; tracking sockets
 * ourselves cost 4% of new-connection throughput. null where that list does
 * not exist (Http2Server, Http2SecureServer without allowHTTP1).
 */
export function openSockets (server: net.Server): HttpSocket[] | null {
  const list = connectionsList<HttpSocket>(server)
  if (list === null) return null
  return list.all().flatMap(parser => parser.socket && !parser.socket.destroyed ? [parser.socket] : [])
}

/** Node's ConnectionsList: every connection, and those with a request arriving. */
export interface ConnectionsList<S> { all (): Array<{ socket?: S | null }>, active (): Array<{ socket?: S | null }> }

/** That list itself, for the drain here and for rebalancing (lib/worker/shed.ts); null where it does not exist. */
export function connectionsList<S extends net.Socket> (server: net.Server): ConnectionsList<S> | null {
  const symbol = Object.getOwnPropertySymbols(server).find(s => s.description === 'http.server.connections')
  const list = symbol === undefined ? undefined : (server as unknown as Record<symbol, Partial<ConnectionsList<S>> | undefined>)[symbol]
  return typeof list?.all === 'function' && typeof list.active === 'function' ? list as ConnectionsList<S> : null
}

export function connectionCount (server: net.Server): Promise<number> {
  return new Promise(resolve => server.getConnections((err, n) => resolve(err ? 0 : n)))
}
