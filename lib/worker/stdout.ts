// The worker's log destination. Each worker writes to a pipe of its own that
// the supervisor forwards line by line (lib/supervisor/logs.ts). A write per line, as
// pino's sync destination does, wakes the supervisor once per line: at -l info
// under load that was 2 writes and 2 forwards per request, and fastify-reuseport
// served 9–14k req/s where cluster served 22k. Here the lines of one turn of
// the event loop go out in one write, at the end of that turn.
//
// An exit through Node (process.exit, an uncaught exception through die(), a
// signal Node handles, the loop running dry) flushes first, and lines logged
// in 'exit' listeners go out at once. A worker that dies without exiting
// (SIGKILL, as one replaced for hanging is; an out-of-memory abort; a crash in
// native code) loses the lines of its last turn, but only under load: a line
// that comes after idleMs without a write goes out at once, so at low traffic
// no line waits. The write is synchronous and retried while the pipe is full
// (a slow reader slows this worker down; nothing is dropped), as
// pino.destination({ sync: true }) does.
import fs from 'node:fs'

export interface TurnBufferedOptions {
  /** Written at once past this many buffered characters, without waiting for the turn's end. Default 64 Ki. */
  highWaterMark?: number
  /** A line after this long without a write is written at once. Default 1 ms: under load, turns follow each other more closely. */
  idleMs?: number
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

export function turnBuffered (fd: number, { highWaterMark = 64 * 1024, idleMs = 1 }: TurnBufferedOptions = {}): TurnBuffered {
  let lines: string[] = []
  let bytes = 0
  let scheduled: NodeJS.Immediate | null = null
  let wroteAt = -Infinity
  // No immediate runs once 'exit' is emitted.
  let exiting = false

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
    wroteAt = performance.now()
  }
  process.on('exit', () => {
    exiting = true
    flushSync()
  })

  return {
    write (line) {
      lines.push(line)
      bytes += line.length
      if (exiting || bytes >= highWaterMark || (lines.length === 1 && performance.now() - wroteAt >= idleMs)) flushSync()
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
