// Serving the queue of a slot that has no worker: its worker crashed, hung
// and was killed, or is in respawn backoff. Steering already sends new
// connections elsewhere, but those queued on the slot (and handshakes that
// complete there) would wait for the replacement: up to 10 s of backoff. For
// that window only, the supervisor accepts them on a duplicate of the slot's
// fd and passes each one to a live worker over Node's IPC channel, as
// cluster's round-robin primary does for every connection. Nothing of this
// runs while every slot has a worker.
import type { ChildProcess } from 'node:child_process'
import net from 'node:net'
import type { Listener } from '../common/listener'
import { HANDOFF } from '../common/messages'
import type { NativeBinding } from '../common/native'

export class Handoff {
  private readonly servers: net.Server[] = []
  /** Connections passed on so far. */
  count = 0

  /** Starts accepting on duplicates of `listeners`; `target` names the worker that gets the next connection. */
  constructor (binding: NativeBinding, listeners: Listener[], private readonly target: () => ChildProcess | null) {
    for (const l of listeners) {
      let fd: number
      try { fd = binding.dup(l.fd) } catch { continue }
      // pauseOnConnect: not a byte is read here; the worker reads the request.
      const server = net.createServer({ pauseOnConnect: true }, socket => this.pass(socket))
      server.on('error', () => { /* the slot is closing: nothing left to serve */ })
      // Backlog positionally, or Node re-listens with 511 (lib/net.js).
      server.listen({ fd }, l.backlog)
      this.servers.push(server)
    }
  }

  private pass (socket: net.Socket): void {
    const child = this.target()
    if (child === null || !child.connected) {
      socket.destroy()
      return
    }
    this.count++
    child.send({ type: HANDOFF }, socket, err => { if (err) socket.destroy() })
  }

  /** Stops accepting; closes the duplicates only, so the slot's socket and queue stay. */
  close (): void {
    for (const s of this.servers) s.close()
    this.servers.length = 0
  }
}
