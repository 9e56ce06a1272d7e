import fs from 'node:fs'
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
  /**
   * PR_SET_PDEATHSIG: the kernel sends `signal` (a number, 0 clears it) to this
   * process when its parent exits. Returns the parent's pid read after setting
   * it, to compare with the expected parent: one that died first sends nothing.
   */
  setParentDeathSignal (signal: number): number
  /** One datagram to systemd's notify socket (a path, or @abstract), with fds as SCM_RIGHTS. */
  notify (path: string, message: string, fds: number[]): void
  /** What an inherited socket is: its address, and whether it is a listening stream socket with SO_REUSEPORT. */
  socketInfo (fd: number): SocketInfo
  /** Clears FD_CLOEXEC: the fd survives execve (an in-place upgrade, lib/supervisor/upgrade.ts). */
  clearCloexec (fd: number): void
  /** Replaces this program, same pid (Node 20 has no process.execve); returns only by throwing. */
  execve (path: string, argv: string[], envPairs: string[]): never
  /** An anonymous file (memfd_create) holding buffer at offset 0, without close-on-exec. */
  memfdState (buffer: Buffer): number
  /**
   * Calls onReadable once, on this thread, when any of fds is readable (for a
   * listener: a connection waits in its accept queue). A thread of the addon
   * waits in epoll_wait meanwhile; it keeps the process alive no more than
   * an unref'd timer.
   */
  watchReadable (fds: number[], onReadable: () => void): ReadableWatch
  /** Stops a watch; again, or after it fired, does nothing. */
  unwatchReadable (watch: ReadableWatch): void
  /** Reaps a child libuv did not spawn: null while it runs. */
  waitpid (pid: number): { code: number, signal: null } | { code: null, signal: number } | null
}

/** What watchReadable() returns: only unwatchReadable() reads it. */
export interface ReadableWatch { readonly __brand: 'ReadableWatch' }

export interface SocketInfo {
  address: string
  /** 0: neither IPv4 nor IPv6. */
  family: 0 | 4 | 6
  port: number
  stream: boolean
  listening: boolean
  reusePort: boolean
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

/** What decides why the addon is unavailable, and so the fix to suggest. */
export interface NativeFacts {
  platform: string
  arch: string
  libc: 'glibc' | 'musl'
  /** The first line of node-gyp-build's error, or null when it loaded. */
  loadError: string | null
  /** What native/build.js found missing when it could not build the addon. */
  installError: string | null
}

const TOOLS = 'python3, make and g++'

/** The text of FST_REUSEPORT_UNSUPPORTED: what is wrong, then the fix. */
export function unsupportedReason (facts: NativeFacts): string {
  const { platform, arch, libc, loadError, installError } = facts
  if (platform !== 'linux') {
    return `SO_REUSEPORT balances connections across processes on Linux only, not on ${platform}: deploy on Linux to use it`
  }
  const packages = libc === 'musl' ? 'apk add python3 make g++' : 'apt-get install python3 make g++'
  // Installing runs no script (npm 11, pnpm 10 and Bun would ask for approval
  // first): where no prebuilt binary fits, the user builds it, once.
  if (installError !== null) {
    return `the native addon could not be loaded: ${installError}; to fix, install ${TOOLS} (${packages}) and run \`npx fastify-reuseport build\``
  }
  if (loadError === null || loadError.startsWith('No native build was found')) {
    return `the native addon could not be loaded: no prebuilt binary for linux-${arch} (${libc}); ` +
      `to fix, build it from source: \`npx fastify-reuseport build\` (needs ${TOOLS})`
  }
  return `the native addon could not be loaded (${loadError}); to fix, build it from source: ` +
    `\`npx fastify-reuseport build\` (needs ${TOOLS})`
}

// Mirrors node-gyp-build, which picks prebuilds/*.musl.node on Alpine or with LIBC=musl.
function libc (): 'glibc' | 'musl' {
  if (process.env.LIBC === 'musl' || process.env.LIBC === 'glibc') return process.env.LIBC
  return fs.existsSync('/etc/alpine-release') ? 'musl' : 'glibc'
}

function readInstallError (root: string): string | null {
  try {
    return fs.readFileSync(path.join(root, 'build', 'install-error.txt'), 'utf8').trim() || null
  } catch {
    return null
  }
}

function load (): NativeLoad {
  const facts = { platform: process.platform, arch: process.arch, libc: libc(), loadError: null, installError: null }
  if (process.platform !== 'linux') return { binding: null, reason: unsupportedReason(facts) }
  // dist/lib/common/native.js -> the package root, where build/ and prebuilds/ live.
  const root = path.join(__dirname, '..', '..', '..')
  try {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => { supported: boolean }
    const binding = nodeGypBuild(root)
    if (binding.supported !== true) return { binding: null, reason: 'the native addon was built without Linux support' }
    return { binding: binding as NativeBinding, reason: null }
  } catch (err) {
    const loadError = (err as Error).message.split('\n')[0]
    return { binding: null, reason: unsupportedReason({ ...facts, loadError, installError: readInstallError(root) }) }
  }
}
