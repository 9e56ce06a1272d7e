import type http from 'node:http'
import net from 'node:net'
import { kAccepted, kListeners } from './symbols'

interface DrainableServer extends http.Server {
  [kAccepted]?: number
  [kListeners]?: net.Server[]
}

type HttpSocket = net.Socket & { _httpMessage?: http.ServerResponse | null }

export interface DrainOptions {
  /** Close a kept-alive connection once it has been idle this long. */
  idleMs: number
  /** Give up waiting for connections after this long. */
  graceMs: number
}

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

/**
 * The sockets of an http.Server's open connections, from the list Node keeps
 * for its own connection checks (lib/_http_server.js, kConnections; Node
 * >= 18.2). Reading it at drain time costs nothing while serving; tracking
 * sockets ourselves cost 4% of new-connection throughput. null where that
 * list does not exist.
 */
function openSockets (server: http.Server): HttpSocket[] | null {
  const symbol = Object.getOwnPropertySymbols(server).find(s => s.description === 'http.server.connections')
  const list = symbol === undefined ? undefined : (server as unknown as Record<symbol, { all?: () => Array<{ socket?: HttpSocket }> }>)[symbol]
  if (typeof list?.all !== 'function') return null
  return list.all().flatMap(parser => parser.socket ? [parser.socket] : [])
}

function connectionCount (server: net.Server): Promise<number> {
  return new Promise(resolve => server.getConnections((err, n) => resolve(err ? 0 : n)))
}

/**
 * Drains a worker without failing a request (DESIGN.md, "Draining"):
 * stop accepting on this process's copies of the listeners only, answer every
 * further request with Connection: close, close a kept-alive connection only
 * after it has been idle for idleMs, and resolve once no connection is left
 * (true) or at the grace deadline (false).
 */
export async function drain (server: http.Server, { idleMs, graceMs }: DrainOptions): Promise<boolean> {
  const s = server as DrainableServer
  // net.Server's close, not http.Server's: the latter also closes idle
  // keep-alive connections at once (Node >= 19, httpServerPreClose), racing
  // the client's next request on them.
  if (server.listening) net.Server.prototype.close.call(server)
  for (const extra of s[kListeners] ?? []) if (extra.listening) extra.close()

  server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    res.shouldKeepAlive = false
    // An idle connection got an idle timeout below; a request on it must not inherit it.
    req.socket.setTimeout(server.timeout)
  })
  // Responses finishing from now on arm Node's own keep-alive timer with this.
  server.keepAliveTimeout = Math.min(server.keepAliveTimeout || idleMs, idleMs)

  const sockets = openSockets(server)
  if (sockets !== null) {
    for (const socket of sockets) {
      const res = socket._httpMessage
      if (res) {
        if (!res.headersSent) res.shouldKeepAlive = false
      } else {
        // Idle now: destroyed by Node's socket-timeout handler unless a request comes first.
        socket.setTimeout(idleMs)
      }
    }
  }
  const servers: net.Server[] = [server, ...(s[kListeners] ?? [])]
  const open = async (): Promise<number> => (await Promise.all(servers.map(connectionCount))).reduce((a, b) => a + b, 0)
  const deadline = Date.now() + graceMs
  let nextIdleSweep = Date.now() + idleMs
  while (await open() > 0 && Date.now() < deadline) {
    // Without Node's list, idle connections are found only as they are now.
    if (sockets === null && Date.now() >= nextIdleSweep) {
      server.closeIdleConnections()
      nextIdleSweep = Date.now() + idleMs
    }
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  return await open() === 0
}
