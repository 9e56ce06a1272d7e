// Starting one worker process: its slot fds, its private control channel,
// its environment, and an exit that is always reported, even when spawn()
// itself fails (EMFILE under fd pressure once took the supervisor down).
import { spawn, type ChildProcess } from 'node:child_process'
import cluster from 'node:cluster'
import type net from 'node:net'
import path from 'node:path'
import { Channel } from '../common/channel'
import { LISTENERS_ENV, type Listener } from '../common/listener'
import { WORKER_ENV, type SupervisorMessage, type WorkerConfig } from '../common/messages'

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
  /** spawn() failed: the process never ran. */
  error: Error | null
}

/** The supervisor's end of a worker's control channel (lib/common/channel.ts). */
export interface ControlChannel {
  readonly open: boolean
  send: (message: SupervisorMessage) => Promise<void>
  on: (event: 'message', listener: (message: unknown) => void) => unknown
  off: (event: 'message', listener: (message: unknown) => void) => unknown
}

export interface WorkerProcess {
  /** -1 when spawn() failed. */
  pid: number
  /** Node's IPC channel lives on it: the hand-off passes connections through it. */
  child: ChildProcess | null
  channel: ControlChannel | null
  /** Resolves once the process is gone and its last messages are read, or at once when it could not start. */
  exited: Promise<Exit>
  kill (signal: NodeJS.Signals): void
}

export interface SpawnSpec {
  listeners: Listener[]
  config: Omit<WorkerConfig, 'control' | 'supervisorPid'>
  /** Node options before the worker script (--require, --import). */
  preload: string[]
  /** Fork through Node's cluster module (the cluster balancer): its listen() goes through our cluster primary. */
  viaCluster: boolean
}

const WORKER_SCRIPT = path.join(__dirname, '..', 'worker', 'main.js')
// stdio index = fd number in the child: 3 is Node's IPC channel (the app's
// process.send, and connections handed over), 4 our control channel, the
// slot's listeners follow.
const CONTROL_FD = 4
// A worker's last message (its crash report) is read before its exit counts,
// unless something else holds the channel open.
const LAST_WORDS_MS = 1000

/** Spawns a worker: the supervisor's spawner, replaced by a fake in the in-process tests. */
export type Spawner = (spec: SpawnSpec) => WorkerProcess

// Each worker writes to pipes of its own; only whole lines reach ours (lib/supervisor/logs.ts).
const OUTPUT = 'pipe'

export function spawnWorker ({ listeners, config, preload, viaCluster }: SpawnSpec): WorkerProcess {
  const inherited = listeners.map((l, i) => ({ ...l, fd: CONTROL_FD + 1 + i }))
  const env: Record<string, string> = { [WORKER_ENV]: JSON.stringify({ ...config, control: CONTROL_FD, supervisorPid: process.pid } satisfies WorkerConfig) }
  if (inherited.length > 0) env[LISTENERS_ENV] = JSON.stringify(inherited)
  let child: ChildProcess
  try {
    if (viaCluster) {
      setupCluster(preload)
      child = cluster.fork(env).process
    } else {
      child = spawn(process.execPath, [...process.execArgv, ...preload, WORKER_SCRIPT], {
        stdio: ['inherit', OUTPUT, OUTPUT, 'ipc', 'pipe', ...listeners.map(l => l.fd)],
        env: { ...process.env, ...env }
      })
    }
  } catch (err) {
    return failed(err as Error)
  }
  if (child.pid === undefined) {
    // EMFILE, EAGAIN, ENOENT: Node reports them as an 'error' event, and no 'exit' follows.
    const error = new Promise<Exit>(resolve => child.once('error', err => resolve({ code: null, signal: null, error: err })))
    return { pid: -1, child, channel: null, exited: error, kill: () => {} }
  }
  // Errors of a running child (a kill or send that failed) must not be thrown.
  child.on('error', () => {})
  const channel = new Channel(child.stdio[CONTROL_FD] as net.Socket)
  const exited = new Promise<Exit>(resolve => {
    child.once('exit', (code, signal) => {
      const done = (): void => { clearTimeout(timer); resolve({ code, signal, error: null }) }
      const timer = setTimeout(done, LAST_WORDS_MS)
      if (channel.open) channel.once('close', done)
      else done()
    })
  })
  return {
    pid: child.pid,
    child,
    channel,
    exited,
    kill: signal => { child.kill(signal) }
  }
}

let clusterReady = false

/** Round-robin, as on every platform but Windows by default: the primary deals connections out in turn. */
function setupCluster (preload: string[]): void {
  if (clusterReady) return
  clusterReady = true
  // Read once, by the first setupPrimary (lib/internal/cluster/primary.js).
  cluster.schedulingPolicy = cluster.SCHED_RR
  cluster.setupPrimary({
    exec: WORKER_SCRIPT,
    execArgv: [...process.execArgv, ...preload],
    stdio: ['inherit', OUTPUT, OUTPUT, 'ipc', 'pipe']
  })
}

function failed (error: Error): WorkerProcess {
  return { pid: -1, child: null, channel: null, exited: Promise.resolve({ code: null, signal: null, error }), kill: () => {} }
}
