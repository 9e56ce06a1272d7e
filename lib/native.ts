import path from 'node:path'

/** Accept-queue state of one listening socket, from TCP_INFO. */
export interface QueueInfo {
  /** The socket is in LISTEN state. */
  listening: boolean
  /** Connections waiting in the accept queue (ss -ltn Recv-Q). */
  queued: number
  /** The accept queue's limit, the listen(2) backlog (ss -ltn Send-Q). */
  backlog: number
}

/** The surface of native/: see native/ops.h. */
export interface NativeBinding {
  supported: true
  /** A bound, listening SO_REUSEPORT socket (non-blocking, close-on-exec). */
  createListener (address: string, port: number, backlog: number, ipv6Only: boolean): { fd: number, port: number }
  close (fd: number): void
  queueInfo (fd: number): QueueInfo
  /** Attach a classic BPF program (4 words per instruction) to fd's reuseport group. */
  attachSteering (fd: number, program: Uint32Array): void
  detachSteering (fd: number): void
  /** Reaps exited children other than `keep` (as PID 1, orphans are ours to wait for); returns how many. */
  reapOrphans (keep: number[]): number
  /** A close-on-exec duplicate of fd (same open socket). */
  dup (fd: number): number
  /** Sets FD_CLOEXEC on fd, so that processes spawned later do not inherit it. */
  setCloexec (fd: number): void
}

export type NativeLoad =
  | { binding: NativeBinding, reason: null }
  | { binding: null, reason: string }

let cached: NativeLoad | undefined

/** Loads the addon once; says why when this platform or build cannot balance with it. */
export function loadNative (): NativeLoad {
  if (cached !== undefined) return cached
  cached = load()
  return cached
}

function load (): NativeLoad {
  if (process.platform !== 'linux') {
    return { binding: null, reason: `SO_REUSEPORT does not balance connections across processes on ${process.platform}` }
  }
  try {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => { supported: boolean }
    // dist/lib/native.js -> the package root, where build/ lives.
    const binding = nodeGypBuild(path.join(__dirname, '..', '..'))
    if (binding.supported !== true) return { binding: null, reason: 'the native addon was built without Linux support' }
    return { binding: binding as NativeBinding, reason: null }
  } catch (err) {
    return { binding: null, reason: `the native addon could not be loaded (${(err as Error).message.split('\n')[0]})` }
  }
}
