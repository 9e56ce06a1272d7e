// A graceful crash (issue 17.3): an uncaught exception (or an unhandled
// rejection, which Node raises as one) in a serving worker loses nothing but
// the request that threw, if any. Node's own answer, print and exit, resets
// every connection the worker holds: 15 to 22 failed requests per crash under
// keep-alive load in Node's cluster, PM2 and Watt alike. Here the socket is
// the supervisor's, so the worker can leave the way a drain does:
// - it stops accepting at once: it closes its copy of the slot's listener,
//   and the queue stays open in the supervisor;
// - the supervisor hears it (the 'crashing' message) and treats the slot as
//   one whose worker died: its queue is handed to the other workers and a
//   replacement starts at once;
// - every request in flight on its other connections is answered, with
//   Connection: close (GOAWAY on HTTP/2): lib/drain.ts;
// - it exits 1 within the crash grace (--crash-grace; 0: at once, as Node).
// This is what close-with-grace does for fastify-cli in one process. The
// error is logged once, with its stack, by the supervisor. process.exit()
// and SIGKILL stay immediate: nothing runs in between to catch them.
import type { ErrorInfo } from '../common/messages'

export function errorInfo (err: unknown): ErrorInfo {
  const e = (err instanceof Error ? err : new Error(String(err))) as Error & { code?: unknown }
  return { name: e.name, message: e.message, stack: e.stack ?? `${e.name}: ${e.message}`, ...(typeof e.code === 'string' ? { code: e.code } : {}) }
}

export interface GracefulCrash {
  /** How long the crashed worker may answer what it has in flight, ms (0: exit at once). */
  graceMs: number
  /** Closes the listener at once, then ends every connection gracefully within graceMs. */
  drain: (graceMs: number) => Promise<void>
  /** Tells the supervisor: the error, then that the slot needs its replacement now. */
  report: (error: ErrorInfo) => Promise<void>
  /** Ends the worker at once with this error (the boot path, and --crash-grace 0). */
  die: (error: ErrorInfo) => Promise<never>
}

/** The worker's uncaughtException handler once it serves. */
export function crashHandler (c: GracefulCrash): (err: unknown) => void {
  let crashing = false
  return err => {
    // One crash at a time: a second error while the first drains (often the
    // same bug again) changes nothing; the grace deadline still ends us.
    if (crashing) return
    crashing = true
    const error = errorInfo(err)
    if (c.graceMs === 0) {
      void c.die(error)
      return
    }
    // Referenced: an idle worker with its listener closed must still exit 1 by then.
    setTimeout(() => process.exit(1), c.graceMs)
    // drain() closes the listener before its first await: no accept after this line.
    const drained = c.drain(c.graceMs)
    void c.report(error)
    drained.then(() => process.exit(1), () => process.exit(1))
  }
}
