// The new program's half of an in-place upgrade: the workers the old
// program started are still our children (same process), but libuv did not
// spawn them, so nothing here would ever see them exit. Each becomes a
// WorkerProcess of its own kind: its control channel and log pipes from the
// fds carried over, its exit from waitpid(WNOHANG) polled for its pid only
// (libuv waits per pid of its own handles, src/unix/process.c, so neither
// steals the other's status). The lifecycle then takes it like any worker.
import net from 'node:net'
import os from 'node:os'
import { Channel } from '../common/channel'
import type { NativeBinding } from '../common/native'
import { createLineForwarder, type LineForwarder } from './logs'
import type { Slot } from './slot'
import type { Exit, Spawner, WorkerProcess } from './spawn'
import type { CarriedState, CarriedWorker } from './upgrade-state'

const POLL_MS = 100
// As spawn.ts: a worker's last message is read before its exit counts.
const LAST_WORDS_MS = 1000

/** The carried fds of every adopted worker, so that a later upgrade carries them again. */
export const adoptedFds = new WeakMap<WorkerProcess, { control: number, stdout: number, stderr: number, protocol: number }>()

let output: { stdout: LineForwarder, stderr: LineForwarder } | null = null
const pipes = new WeakMap<WorkerProcess, { stdout: net.Socket | null, stderr: net.Socket | null }>()

function signalName (n: number): NodeJS.Signals {
  const entry = Object.entries(os.constants.signals).find(([, v]) => v === n)
  return (entry?.[0] ?? 'SIGKILL') as NodeJS.Signals
}

/** A worker of the program before the execve, as a WorkerProcess. */
export function adoptWorker (binding: NativeBinding, w: CarriedWorker): WorkerProcess {
  let reaped = false
  let socket: net.Socket | null = null
  try { socket = new net.Socket({ fd: w.control, readable: true, writable: true }) } catch { /* gone: its exit is seen below */ }
  const channel = socket === null ? null : new Channel(socket)
  channel?.unref()
  // Whole lines only, through the same forwarders' rules (lib/supervisor/logs.ts).
  output ??= { stdout: createLineForwarder(process.stdout), stderr: createLineForwarder(process.stderr) }
  const open = (fd: number, forwarder: LineForwarder, held: string | undefined): net.Socket | null => {
    if (fd < 0) return null
    try {
      const pipe = new net.Socket({ fd, readable: true, writable: false })
      forwarder.add(pipe, Buffer.from(held ?? '', 'base64'))
      return pipe
    } catch {
      return null
    }
  }
  const logPipes = { stdout: open(w.stdout, output.stdout, w.stdoutHeld), stderr: open(w.stderr, output.stderr, w.stderrHeld) }
  const exited = new Promise<Exit>(resolve => {
    let timer: NodeJS.Timeout | null = null
    const poll = (): void => {
      let status
      try { status = binding.waitpid(w.pid) } catch { status = { code: null, signal: 9 } }
      if (status === null) return
      reaped = true
      if (timer !== null) clearInterval(timer)
      const exit: Exit = { code: status.code, signal: status.signal === null ? null : signalName(status.signal), error: null }
      const done = (): void => { clearTimeout(last); resolve(exit) }
      const last = setTimeout(done, LAST_WORDS_MS)
      if (channel?.open === true) channel.once('close', done)
      else done()
    }
    timer = setInterval(poll, POLL_MS)
    timer.unref()
    // A worker that closes its channel is on its way out: look at once.
    channel?.once('close', () => setTimeout(poll, 5).unref())
  })
  const proc: WorkerProcess = {
    pid: w.pid,
    // Its Node IPC channel (fd 3) was closed by the execve: no hand-off to it.
    child: null,
    channel,
    exited,
    kill: signal => {
      // Never a signal to a pid already reaped: it may be someone else's by now.
      if (!reaped) try { process.kill(w.pid, signal) } catch { /* gone */ }
    }
  }
  adoptedFds.set(proc, { control: w.control, stdout: w.stdout, stderr: w.stderr, protocol: w.protocol })
  pipes.set(proc, logPipes)
  return proc
}

/**
 * The lifecycle's spawner while restoring: the first worker asked for each
 * carried slot is the adopted one, which says it is ready (it has been for
 * a while) as soon as the lifecycle listens; any later one is spawned.
 */
export function adoptingSpawner (binding: NativeBinding, state: CarriedState, spawn: Spawner): Spawner {
  const waiting = new Map(state.slots.map((s, i) => [i, s.worker]))
  return spec => {
    const carried = waiting.get(spec.config.slot)
    if (carried === undefined) return spawn(spec)
    waiting.delete(spec.config.slot)
    const proc = adoptWorker(binding, carried)
    setImmediate(() => {
      if (proc.channel instanceof Channel) proc.channel.emit('message', { type: 'ready', addresses: carried.addresses, protocol: carried.protocol })
    })
    return proc
  }
}

/** What the old program knew of each slot, onto the restored slots. */
export function restoreCounters (slots: Slot[], state: CarriedState, now: number): void {
  for (const [i, carried] of state.slots.entries()) {
    const slot = slots[i]
    if (slot === undefined) continue
    slot.restarts = carried.restarts
    slot.stalls = carried.stalls
    slot.replacements = { ...slot.replacements, ...carried.replacements }
    slot.acceptedBefore = carried.acceptedBefore
    slot.handedOffBefore = carried.handedOffBefore
    slot.lastExit = carried.lastExit
    const w = slot.worker
    if (w === null || w.pid !== carried.worker.pid) continue
    w.readyAt = now - carried.worker.readyFor
    w.accepted = carried.worker.accepted
    w.open = carried.worker.open
    w.rss = carried.worker.rss
    w.requests = carried.worker.requests
    w.requestLimit = carried.worker.requestLimit
  }
}

/** An adopted worker's partial lines not yet forwarded; null for a worker this program spawned. */
export function adoptedHeld (proc: WorkerProcess): { stdout: Buffer, stderr: Buffer } | null {
  const p = pipes.get(proc)
  if (p === undefined || output === null) return null
  const none = Buffer.alloc(0)
  return { stdout: p.stdout ? output.stdout.held(p.stdout) : none, stderr: p.stderr ? output.stderr.held(p.stderr) : none }
}

/** Resolves once the adopted workers' last lines are out. */
export async function adoptedOutputEnded (): Promise<void> {
  if (output !== null) await Promise.all([output.stdout.ended(), output.stderr.ended()])
}
