// The worker's side of rebalancing (lib/supervisor/balance.ts): how many connections it
// holds, and ending some kept-alive ones gracefully so that their clients
// reconnect, and the supervisor's steering places them on another slot.
import type http from 'node:http'
import type net from 'node:net'
import { connectionsList } from '../plugin/connections'
import { kListeners, kSessions, kShed, kShedding } from '../plugin/symbols'

interface Http2Session {
  closed: boolean
  destroyed: boolean
  socket?: net.Socket | null
  close (): void
  once (event: 'close', listener: () => void): unknown
}

type Res = http.ServerResponse
type Socket = net.Socket & { _httpMessage?: Res | null, [kShed]?: true }

interface Shedding {
  /** Marked sockets not yet closed: the request hook stays while there are any. */
  pending: number
  onRequest: (req: http.IncomingMessage, res: Res) => void
}

interface Server extends net.Server {
  /** net.Server's own count of open connections, the one getConnections() reports (lib/net.js). */
  _connections?: number
  /** http.Server's socket timeout for requests. */
  timeout?: number
  [kListeners]?: Array<net.Server & { _connections?: number }>
  [kSessions]?: Set<Http2Session>
  [kShedding]?: Shedding
}

/**
 * Open connections of a server (http, https, http2), counting those on the
 * extra listeners fastify-reuseport serves for it: a sum of net.Server's own
 * counters, no walk over the connections. Upgraded ones (WebSocket) count.
 */
export function openConnections (server: net.Server): number {
  const s = server as Server
  let n = s._connections ?? 0
  for (const extra of s[kListeners] ?? []) n += extra._connections ?? 0
  return n
}

export interface ShedOptions {
  /** A connection idle now is closed once it has stayed idle this long, unless a request comes first (which then gets Connection: close). Default 1000 ms. */
  idleMs?: number
}

/**
 * Ends n kept-alive connections gracefully; returns how many it could pick
 * (fewer when fewer are open, or not yet kept alive: a connection that has
 * not answered a request yet may be one just steered here).
 * - HTTP/1.1: the response in flight, if its headers are not sent yet, or
 *   else the next one, carries Connection: close, and Node closes the socket
 *   after it. A connection idle now is never closed under a request: it gets
 *   Connection: close on its next response, or is closed by Node's
 *   socket-timeout handler after idleMs idle, as keepAliveTimeout would.
 * - HTTP/2 (sessions seen by drain.ts's trackSessions): session.close(), a GOAWAY:
 *   streams in flight finish, the client opens new ones on a new connection.
 * Preferred: idle connections, then those whose response can still say
 * close, then the busiest (most bytes written). Costs nothing per request
 * while no marked connection is open: the request hook comes and goes.
 */
export function shed (server: net.Server, n: number, { idleMs = 1000 }: ShedOptions = {}): number {
  if (!Number.isInteger(n) || n < 0) throw new TypeError(`shed needs a connection count, an integer >= 0, received ${String(n)}`)
  if (!Number.isInteger(idleMs) || idleMs < 1) throw new TypeError(`shed needs idleMs, an integer >= 1, received ${String(idleMs)}`)
  const s = server as Server
  let picked = 0

  const list = connectionsList<Socket>(server)
  if (list !== null && n > 0) {
    // A request still arriving: its response can say close.
    const arriving = new Set(list.active().map(p => p.socket))
    const candidates: Array<{ socket: Socket, rank: number, written: number }> = []
    for (const { socket } of list.all()) {
      if (!socket || socket.destroyed || socket[kShed] || socket.bytesWritten === 0) continue
      const res = socket._httpMessage
      const inFlight = (res !== null && res !== undefined && !res.writableFinished) || arriving.has(socket)
      // Already closing after this response: nothing to ask.
      if (res && !res.headersSent && !res.shouldKeepAlive) continue
      const rank = !inFlight ? 0 : (res == null || !res.headersSent) ? 1 : 2
      candidates.push({ socket, rank, written: socket.bytesWritten })
    }
    candidates.sort((a, b) => a.rank - b.rank || b.written - a.written)
    for (const { socket, rank } of candidates.slice(0, n)) {
      mark(s, socket)
      const res = socket._httpMessage
      if (rank === 0) socket.setTimeout(idleMs)
      else if (res && !res.headersSent) res.shouldKeepAlive = false
      picked++
    }
  }

  const sessions = [...(s[kSessions] ?? [])].filter(x => !x.closed && !x.destroyed)
  sessions.sort((a, b) => (b.socket?.bytesWritten ?? 0) - (a.socket?.bytesWritten ?? 0))
  for (const session of sessions.slice(0, n - picked)) {
    session.close()
    picked++
  }
  return picked
}

/** Marks a socket to close after its next response, hooking 'request' while any marked socket is open. */
function mark (server: Server, socket: Socket): void {
  socket[kShed] = true
  let state = server[kShedding]
  if (state === undefined) {
    state = {
      pending: 0,
      onRequest: (req, res) => {
        const sock = req.socket as Socket
        if (sock[kShed] !== true) return
        res.shouldKeepAlive = false
        // An idle socket got a short timeout; its last request must not inherit it.
        sock.setTimeout(server.timeout ?? 0)
      }
    }
    server[kShedding] = state
  }
  if (state.pending++ === 0) server.prependListener('request', state.onRequest)
  const shedding = state
  socket.once('close', () => {
    if (--shedding.pending === 0) server.off('request', shedding.onRequest)
  })
}
