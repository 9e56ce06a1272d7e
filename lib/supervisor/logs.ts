// Whole log lines from many workers into one stream. Workers that share the
// supervisor's stdout splice each other's lines: a pipe write is atomic only
// up to PIPE_BUF (4 KiB on Linux, pipe(7)), and Node's stdout on a pipe is
// non-blocking, so a long line goes out in pieces and another worker's
// pieces land between them (issue 13: 37 of 6,093 lines were not JSON).
// Here each worker writes to its own pipe and only whole lines reach dest.
import type { Readable, Writable } from 'node:stream'

export interface LineForwarderOptions {
  /**
   * Longest line held whole, bytes. Default 1 MiB. A line that grows past it
   * without a newline is cut every maxLineLength bytes, each piece going out
   * as a line of its own. Holding it whole would let one worker
   * grow the supervisor's memory without bound; writing it without a newline
   * would splice it with another worker's line. A cut line is at worst
   * invalid JSON, never two workers' text mixed.
   */
  maxLineLength?: number
}

export interface LineForwarder {
  /**
   * Forwards source's whole lines to dest until source ends, then its last
   * partial line, with a newline added. Source must be a byte stream (no
   * setEncoding). initial: the start of a line another program had read
   * from the same pipe (an in-place upgrade).
   */
  add (source: Readable, initial?: Buffer): void
  /** The partial line read from source and not yet forwarded (an in-place upgrade carries it). */
  held (source: Readable): Buffer
  /** Sources added and not yet ended. */
  readonly sources: number
  /** Lines cut at maxLineLength so far. */
  readonly cut: number
  /** Resolves once every source added so far has ended and its lines went to dest. */
  ended (): Promise<void>
}

const NEWLINE = Buffer.from('\n')

export function createLineForwarder (dest: Writable, { maxLineLength = 1024 * 1024 }: LineForwarderOptions = {}): LineForwarder {
  const open = new Set<Readable>()
  let paused = false
  // dest is gone (EPIPE: the reader of our stdout exited). Sources are still
  // read and their lines dropped: a worker blocked on a full pipe would serve
  // nothing.
  let broken = false
  let cut = 0
  let waiters: Array<() => void> = []
  const heldBy = new Map<Readable, () => Buffer>()

  // Backpressure: while dest cannot take more, no source is read, so each
  // worker's pipe fills and the worker blocks on its own write instead of
  // the supervisor buffering without bound.
  const write = (chunk: Buffer): void => {
    if (broken) return
    if (!dest.write(chunk) && !paused) {
      paused = true
      for (const s of open) s.pause()
      dest.once('drain', resume)
    }
  }
  const resume = (): void => {
    paused = false
    for (const s of open) s.resume()
  }
  const onDestError = (): void => {
    broken = true
    dest.off('drain', resume)
    resume()
  }
  dest.on('error', onDestError)

  const settle = (): void => {
    if (open.size > 0) return
    const ready = waiters
    waiters = []
    for (const fn of ready) fn()
  }

  function add (source: Readable, initial?: Buffer): void {
    // The start of the line in progress: the tails of earlier chunks.
    let held: Buffer[] = initial !== undefined && initial.length > 0 ? [initial] : []
    let heldLength = initial?.length ?? 0
    open.add(source)
    heldBy.set(source, () => Buffer.concat(held))
    // Cuts the line in progress into lines of maxLineLength while it is that long.
    const cutHeld = (): void => {
      let rest = Buffer.concat(held)
      while (rest.length >= maxLineLength) {
        cut++
        write(Buffer.concat([rest.subarray(0, maxLineLength), NEWLINE]))
        rest = rest.subarray(maxLineLength)
      }
      held = rest.length > 0 ? [Buffer.from(rest)] : []
      heldLength = rest.length
    }
    const onData = (data: Buffer | string): void => {
      const chunk = typeof data === 'string' ? Buffer.from(data) : data
      const last = chunk.lastIndexOf(10)
      if (last === -1) {
        held.push(chunk)
        heldLength += chunk.length
      } else {
        // The held start and every whole line of this chunk, in one writev and
        // no copy: nothing else can write to dest in between, in this tick.
        dest.cork()
        for (const piece of held) write(piece)
        write(chunk.subarray(0, last + 1))
        dest.uncork()
        // A copy, so that a short tail does not pin the whole chunk.
        held = last + 1 < chunk.length ? [Buffer.from(chunk.subarray(last + 1))] : []
        heldLength = chunk.length - last - 1
      }
      if (heldLength >= maxLineLength) cutHeld()
    }
    const onEnd = (): void => {
      source.off('data', onData)
      source.off('end', onEnd)
      source.off('close', onEnd)
      source.off('error', onEnd)
      heldBy.delete(source)
      if (!open.delete(source)) return
      if (heldLength > 0) {
        held.push(NEWLINE)
        write(Buffer.concat(held))
        held = []
        heldLength = 0
      }
      settle()
    }
    source.on('data', onData)
    source.on('end', onEnd)
    // A pipe destroyed or failing (the worker's end closed abruptly) ends as well.
    source.on('close', onEnd)
    source.on('error', onEnd)
    if (paused) source.pause()
  }

  return {
    add,
    held: source => heldBy.get(source)?.() ?? Buffer.alloc(0),
    get sources () { return open.size },
    get cut () { return cut },
    ended () {
      return new Promise(resolve => {
        waiters.push(resolve)
        settle()
      })
    }
  }
}
