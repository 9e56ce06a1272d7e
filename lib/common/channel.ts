// The private control channel between the supervisor and a worker: JSON
// lines over a socketpair of its own (a stdio 'pipe' entry, which libuv makes
// a socketpair), not Node's IPC channel. App code can call process.send(),
// and its messages once declared a worker ready 4.6 s before it listened;
// it has no handle on this fd, which the worker takes before the app loads.
import { EventEmitter } from 'node:events'
import net from 'node:net'

export class Channel extends EventEmitter {
  private buffer = ''

  constructor (private readonly socket: net.Socket) {
    super()
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => this.receive(chunk))
    // A peer that dies closes its end: both sides learn it here.
    socket.on('close', () => this.emit('close'))
    socket.on('error', () => { /* 'close' follows */ })
  }

  private receive (chunk: string): void {
    this.buffer += chunk
    let i
    while ((i = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, i)
      this.buffer = this.buffer.slice(i + 1)
      let message: unknown
      try { message = JSON.parse(line) } catch { continue }
      this.emit('message', message)
    }
  }

  get open (): boolean {
    return !this.socket.destroyed && this.socket.writable
  }

  /** Sends one message; resolves once it is written (or the channel is gone). */
  send (message: object): Promise<void> {
    return new Promise(resolve => {
      if (!this.open) return resolve()
      this.socket.write(JSON.stringify(message) + '\n', () => resolve())
    })
  }

  /** Does not keep the event loop alive by itself. */
  unref (): this {
    this.socket.unref()
    return this
  }
}

/** The worker's end, from the fd the supervisor handed down. */
export function openChannel (fd: number): Channel {
  return new Channel(new net.Socket({ fd, readable: true, writable: true }))
}
