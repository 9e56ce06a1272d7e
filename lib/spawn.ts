// Starting one worker process: its slot fds, its private control channel,
// its environment, and an exit that is always reported, even when spawn()
// itself fails (EMFILE under fd pressure once took the supervisor down).
import { spawn, type ChildProcess } from 'node:child_process'
import cluster from 'node:cluster'
import type net from 'node:net'
import path from 'node:path'
import { Channel } from './channel'
import { LISTENERS_ENV, type Listener } from './listener'
import { WORKER_ENV, type WorkerConfig } from './messages'

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
  /** spawn() failed: the process never ran. */
  error: Error | null
}

export interface WorkerProcess {
  /** -1 when spawn() failed. */
  pid: number
  child: ChildProcess | null
  channel: Channel | null
  /** Resolves once the process is gone and its last messages are read, or at once when it could not start. */
  exited: Promise<Exit>
  kill (signal: NodeJS.Signals): void
}

export interface SpawnSpec {
  listeners: Listener[]
  config: Omit<WorkerConfig, 'control' | 'supervisorPid'>
  /** Node options before the worker script (--require, --import). */
  preload: string[]
  /** Where the worker's stdout and stderr go: inherited, or pipes of their own. */
  output: 'inherit' | 'pipe'
  /** Fork through Node's cluster module (the cluster balancer): its listen() goes through our cluster primary. */
  viaCluster: boolean
}

const WORKER_SCRIPT = path.join(__dirname, 'worker.js')
// stdio index = fd number in the child: 3 is Node's IPC channel (the app's
// process.send, and connections handed over), 4 our control channel, the
// slot's listeners follow.
const CONTROL_FD = 4
// A worker's last message (its crash report) is read before its exit counts,
// unless something else holds the channel open.
const LAST_WORDS_MS = 1000

export function spawnWorker ({ listeners, config, preload, output, viaCluster }: SpawnSpec): WorkerProcess {
  const inherited = listeners.map((l, i) => ({ ...l, fd: CONTROL_FD + 1 + i }))
  const env: Record<string, string> = { [WORKER_ENV]: JSON.stringify({ ...config, control: CONTROL_FD, supervisorPid: process.pid } satisfies WorkerConfig) }
  if (inherited.length > 0) env[LISTENERS_ENV] = JSON.stringify(inherited)
  let child: ChildProcess
  try {
    if (viaCluster) {
      setupCluster(preload, output)
      child = cluster.fork(env).process
    } else {
      child = spawn(process.execPath, [...process.execArgv, ...preload, WORKER_SCRIPT], {
        stdio: ['inherit', output, output, 'ipc', 'pipe', ...listeners.map(l => l.fd)],
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
function setupCluster (preload: string[], output: 'inherit' | 'pipe'): void {
  if (clusterReady) return
  clusterReady = true
  // Read once, by the first setupPrimary (lib/internal/cluster/primary.js).
  cluster.schedulingPolicy = cluster.SCHED_RR
  cluster.setupPrimary({
    exec: WORKER_SCRIPT,
    execArgv: [...process.execArgv, ...preload],
    stdio: ['inherit', output, output, 'ipc', 'pipe']
  })
}

function failed (error: Error): WorkerProcess {
  return { pid: -1, child: null, channel: null, exited: Promise.resolve({ code: null, signal: null, error }), kill: () => {} }
}
