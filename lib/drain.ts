import type http from 'node:http'
import net from 'node:net'
import { kConnections, kListeners } from './symbols'

interface Connections {
  open: Set<net.Socket>
  accepted: number
}

interface DrainableServer extends http.Server {
  [kConnections]?: Connections
  [kListeners]?: net.Server[]
}

type HttpSocket = net.Socket & { _httpMessage?: http.ServerResponse | null }

export interface DrainOptions {
  /** Close a kept-alive connection once it has been idle this long. */
  idleMs: number
  /** Give up waiting for connections after this long. */
  graceMs: number
}

/**
 * Remembers open connections, so that a drain can find the idle ones.
 * It costs a Set insert per connection and nothing per request.
 */
export function trackConnections (server: net.Server): void {
  const s = server as DrainableServer
  if (s[kConnections]) return
  const connections: Connections = { open: new Set(), accepted: 0 }
  s[kConnections] = connections
  server.on('connection', (socket: net.Socket) => {
    connections.accepted++
    connections.open.add(socket)
    socket.once('close', () => connections.open.delete(socket))
  })
}

/** Connections accepted so far by a tracked server. */
export function acceptedConnections (server: net.Server): number {
  return (server as DrainableServer)[kConnections]?.accepted ?? 0
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

  const connections = s[kConnections]?.open ?? new Set<net.Socket>()
  for (const socket of connections as Set<HttpSocket>) {
    const res = socket._httpMessage
    if (res) {
      if (!res.headersSent) res.shouldKeepAlive = false
    } else {
      // Idle now: destroyed by Node's socket-timeout handler unless a request comes first.
      socket.setTimeout(idleMs)
    }
  }

  const deadline = Date.now() + graceMs
  while (connections.size > 0 && Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  return connections.size === 0
}
