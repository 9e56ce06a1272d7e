// What an in-place upgrade carries from the old supervisor program to the
// new one (lib/supervisor/upgrade.ts): plain data, versioned, passed in a
// memfd whose fd number is the only thing in the environment. Not env or
// argv: the state may hold secrets (settings such as TLS ticket keys), and
// /proc/<pid>/environ and cmdline are readable by the same user and by ps.
import fs from 'node:fs'
import path from 'node:path'
import type { Listener } from '../common/listener'
import type { NativeBinding } from '../common/native'
import type { ReplaceReason } from './policy'

/** Bump on any change to CarriedState that an older reader would misread. */
export const STATE_VERSION = 1
/** What this code can restore from. */
export const STATE_VERSIONS: readonly number[] = [1]

/** The one environment variable: the memfd's fd number. */
export const STATE_ENV = 'FASTIFY_REUSEPORT_UPGRADE_FD'

export interface CarriedWorker {
  pid: number
  /** The control protocol it announced in its ready message. */
  protocol: number
  /** Milliseconds it had been ready (Date.now() differs little, but a clock may step). */
  readyFor: number
  addresses: string[]
  /** The supervisor's ends: control channel, stdout and stderr pipes (-1: none). */
  control: number
  stdout: number
  stderr: number
  /** The partial lines the old program had read from its pipes, base64: forwarded whole by the new one. */
  stdoutHeld?: string
  stderrHeld?: string
  accepted: number
  open: number
  rss: number
  requests: number
  requestLimit: number
}

export interface CarriedSlot {
  listeners: Listener[]
  restarts: number
  stalls: number
  replacements: Record<ReplaceReason, number>
  acceptedBefore: number
  handedOffBefore: number
  lastExit: string | null
  worker: CarriedWorker
}

export interface CarriedState {
  version: number
  /** Bumped by each upgrade: the first program is generation 0. */
  generation: number
  /** The package version that wrote it, and its Node. */
  from: string
  fromNode?: string
  /** Start settings as resolved by the old program (may hold secrets). */
  settings: Record<string, unknown>
  port: number
  metricsFd: number | null
  slots: CarriedSlot[]
  /** The TLS session ticket keys (lib/supervisor/ticket-keeper.ts): sessions resume across the upgrade. */
  tickets?: string[]
}

/** The package version of the code this file belongs to (dist/lib/supervisor -> package.json), as it was when this program loaded: npm update may have changed the file since. */
export const packageVersion = ((version: string) => () => version)(readVersion())

function readVersion (): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version?: unknown }
    return typeof pkg.version === 'string' ? pkg.version : 'unknown'
  } catch {
    return 'unknown'
  }
}

/** Writes the state into a memfd that survives execve; returns its fd. */
export function writeState (binding: NativeBinding, state: CarriedState): number {
  return binding.memfdState(Buffer.from(JSON.stringify(state)))
}

function isState (v: unknown): v is CarriedState {
  if (typeof v !== 'object' || v === null) return false
  const s = v as Record<string, unknown>
  return typeof s.version === 'number' && typeof s.port === 'number' && Array.isArray(s.slots) &&
    s.slots.every(slot => typeof slot === 'object' && slot !== null && Array.isArray((slot as CarriedSlot).listeners) &&
      typeof (slot as CarriedSlot).worker?.pid === 'number')
}

/**
 * The state an upgrade left for this program, or null on an ordinary start.
 * Reads and closes the memfd and removes the variable, so that nothing the
 * supervisor spawns inherits either; the fds it names are marked
 * close-on-exec again (they were cleared for the execve only).
 */
export function takeCarriedState (binding: NativeBinding | null, env: NodeJS.ProcessEnv = process.env): CarriedState | null {
  const text = env[STATE_ENV]
  if (text === undefined) return null
  delete env[STATE_ENV]
  const fd = Number(text)
  if (!Number.isInteger(fd) || fd < 0) throw new Error(`${STATE_ENV} is not an fd number: ${text}`)
  let raw: string
  try {
    raw = fs.readFileSync(fd, 'utf8')
  } finally {
    fs.closeSync(fd)
  }
  const state: unknown = JSON.parse(raw)
  if (!isState(state)) throw new Error('the carried state is not one this code can read')
  if (!STATE_VERSIONS.includes(state.version)) throw new Error(`carried state version ${state.version} is not one of ${STATE_VERSIONS.join(', ')}`)
  for (const fd of carriedFds(state)) {
    try { binding?.setCloexec(fd) } catch { /* gone: the adoption says so */ }
  }
  return state
}

/** Every fd the state names, which must survive the execve. */
export function carriedFds (state: CarriedState): number[] {
  const fds = state.metricsFd === null ? [] : [state.metricsFd]
  for (const s of state.slots) {
    fds.push(...s.listeners.map(l => l.fd))
    for (const fd of [s.worker.control, s.worker.stdout, s.worker.stderr]) if (fd >= 0) fds.push(fd)
  }
  return fds
}
