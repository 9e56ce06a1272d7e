// The worker's log destination. Each worker writes to a pipe of its own that
// the supervisor forwards line by line (lib/logs.ts). A write per line, as
// pino's sync destination does, wakes the supervisor once per line: at -l info
// under load that was 2 writes and 2 forwards per request, and fastify-reuseport
// served 9–14k req/s where cluster served 22k. Here the lines of one turn of
// the event loop go out in one write, at the end of that turn.
//
// What a worker logged is lost only if it is SIGKILLed within the same turn:
// an exit of any other kind (process.exit, an uncaught exception through die(),
// a signal Node handles) flushes first. The write is synchronous and retried
// while the pipe is full (a slow reader slows this worker down; nothing is
// dropped), as pino.destination({ sync: true }) does.
import fs from 'node:fs'

export interface TurnBufferedOptions {
  /** Written at once past this many buffered bytes, without waiting for the turn's end. Default 64 KiB, a pipe's capacity (pipe(7)). */
  highWaterMark?: number
}

/** A pino destination (write, flush, flushSync). */
export interface TurnBuffered {
  write (line: string): boolean
  flush (cb?: (err?: Error) => void): void
  flushSync (): void
}

const full = new Int32Array(new SharedArrayBuffer(4))

function writeAll (fd: number, buf: Buffer): void {
  let off = 0
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      // The pipe is full: wait for the reader, as a blocking write would.
      if (code === 'EAGAIN') Atomics.wait(full, 0, 0, 1)
      // The reader is gone (EPIPE): there is nowhere to write, and a log
      // line must not become a crash.
      else return
    }
  }
}

export function turnBuffered (fd: number, { highWaterMark = 64 * 1024 }: TurnBufferedOptions = {}): TurnBuffered {
  let lines: string[] = []
  let bytes = 0
  let scheduled: NodeJS.Immediate | null = null

  const flushSync = (): void => {
    if (scheduled !== null) {
      clearImmediate(scheduled)
      scheduled = null
    }
    if (lines.length === 0) return
    const buf = Buffer.from(lines.length === 1 ? lines[0] as string : lines.join(''))
    lines = []
    bytes = 0
    writeAll(fd, buf)
  }
  process.on('exit', flushSync)

  return {
    write (line) {
      lines.push(line)
      bytes += line.length
      if (bytes >= highWaterMark) flushSync()
      // setImmediate runs after this turn's I/O callbacks: every request the
      // turn served has logged by then.
      else if (scheduled === null) scheduled = setImmediate(flushSync)
      return true
    },
    flush (cb) {
      flushSync()
      cb?.()
    },
    flushSync
  }
}
