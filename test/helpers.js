'use strict'

const { spawn, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const path = require('node:path')
const { request, Agent } = require('undici')

const ROOT = path.join(__dirname, '..')
const CLI = path.join(ROOT, 'dist', 'lib', 'cli.js')
const FIXTURES = path.join(__dirname, 'fixtures')

function fdCount () {
  return fs.readdirSync('/proc/self/fd').length
}

/**
 * TCP sockets among this process's fds (by inode, from /proc/net/tcp and
 * tcp6): the kind of fd a listener would leak. glibc's resolver keeps its own
 * UDP and netlink sockets per thread, which a plain fd count would blame on us.
 */
function tcpFdCount () {
  const inodes = new Set()
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    try {
      for (const line of fs.readFileSync(table, 'utf8').split('\n').slice(1)) {
        const inode = line.trim().split(/\s+/)[9]
        if (inode) inodes.add(inode)
      }
    } catch {}
  }
  let n = 0
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/self/fd/${fd}`))
      if (m && inodes.has(m[1])) n++
    } catch {}
  }
  return n
}

/** A port free right now on 127.0.0.1 (closed again before it is returned). */
function freePort () {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    }).on('error', reject)
  })
}

function alive (pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Direct children of pid, from /proc. */
function childrenOf (pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/task`).flatMap(tid =>
      fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number))
  } catch {
    return []
  }
}

/** Processes whose command line mentions marker (to find orphans). */
function processesWith (marker) {
  const found = []
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    try {
      const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8')
      const env = fs.readFileSync(`/proc/${entry}/environ`, 'utf8')
      if (cmd.includes(marker) || env.includes(marker)) found.push(Number(entry))
    } catch {}
  }
  return found
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

async function waitFor (fn, { timeout = 10000, interval = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(interval)
  }
}

/**
 * Starts `fastify-reuseport start ...`; resolves once every slot is served.
 * Lines of its stdout are parsed as pino JSON where they are.
 */
/**
 * Spawns argv with stdout and stderr read into one text. `ready` resolves
 * with match(text) once that is truthy after stdout data, and rejects if the
 * child exits first; what names the child in that error.
 */
function spawnUntil (what, argv, options, match) {
  const child = spawn(argv[0], argv.slice(1), { ...options, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', d => { out += d })
  child.stderr.on('data', d => { out += d })
  const ready = new Promise((resolve, reject) => {
    child.stdout.on('data', () => {
      const found = match(out)
      if (found) resolve(found)
    })
    child.once('exit', code => reject(new Error(`${what} exited ${code}: ${out}`)))
  })
  return { child, ready, output: () => out }
}

const FASTIFY_CLI = path.join(ROOT, 'node_modules', 'fastify-cli', 'cli.js')

/** The real fastify-cli: `fastify start <args> test/fixtures/cli-app.js`; `ready` resolves once it logs that it listens. */
function fastifyStart (args, { bin = process.execPath, env = {} } = {}) {
  return spawnUntil('fastify start', [bin, FASTIFY_CLI, 'start', ...args, path.join(FIXTURES, 'cli-app.js')], { env: { ...process.env, ...env } },
    out => out.includes('Server listening'))
}

async function startCli (args, { env = {}, ready = true, timeout = 20000, wrap = [], cli = CLI, node = process.execPath } = {}) {
  // wrap: a command that execs the rest, such as ['ip', 'netns', 'exec', name].
  // cli: another copy of the package's CLI (the upgrade tests).
  const argv = [...wrap, node, cli, 'start', ...args]
  const child = spawn(argv[0], argv.slice(1), {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const lines = []
  let stderr = ''
  let buffer = ''
  child.stdout.on('data', d => {
    buffer += d
    let i
    while ((i = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, i)
      buffer = buffer.slice(i + 1)
      try { lines.push(JSON.parse(line)) } catch { lines.push({ msg: line }) }
    }
  })
  child.stderr.on('data', d => { stderr += d })
  const exited = new Promise(resolve => child.once('exit', (code, signal) => resolve({ code, signal })))
  const handle = {
    child,
    lines,
    exited,
    get stderr () { return stderr },
    /** Worker pids from the latest line per slot. */
    workerPids () { return childrenOf(child.pid) },
    async stop (signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    }
  }
  if (ready) {
    await Promise.race([
      waitFor(() => lines.some(l => typeof l.msg === 'string' && l.msg.startsWith('safety nets')), { timeout, what: 'workers to be ready' }),
      exited.then(r => { throw new Error(`supervisor exited early (${JSON.stringify(r)}): ${stderr}`) })
    ])
  }
  return handle
}

/**
 * A bounded HTTP load from undici: `connections` loops, each sending requests
 * until durationMs passes. keepAlive false sends Connection: close, so that
 * every request opens a new connection. Every request's fate is counted.
 */
async function load ({ url, durationMs, connections = 8, keepAlive = true, path: reqPath = '/', timeoutMs = 10000, record = false }) {
  const agent = new Agent({ connections, pipelining: 1, keepAliveTimeout: 60000, connect: { timeout: timeoutMs } })
  // record: every request's start time, latency and serving pid, for timelines.
  const result = { requests: 0, ok: 0, non2xx: 0, errors: {}, pids: {}, samples: [] }
  const deadline = Date.now() + durationMs
  async function loop () {
    while (Date.now() < deadline) {
      result.requests++
      const start = Date.now()
      try {
        const res = await request(url + reqPath, {
          dispatcher: agent,
          reset: !keepAlive,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs
        })
        const body = await res.body.text()
        if (res.statusCode >= 200 && res.statusCode < 300) {
          result.ok++
          try {
            const pid = JSON.parse(body).pid
            if (pid) result.pids[pid] = (result.pids[pid] ?? 0) + 1
            if (record) result.samples.push({ start, ms: Date.now() - start, pid })
          } catch {}
        } else {
          result.non2xx++
        }
      } catch (err) {
        const code = err.code ?? err.name
        result.errors[code] = (result.errors[code] ?? 0) + 1
      }
    }
  }
  await Promise.all(Array.from({ length: connections }, loop))
  await agent.close()
  result.failed = result.requests - result.ok
  return result
}

/**
 * Open-loop load: a new request on a new connection every 1000/rate ms for
 * durationMs, whether or not earlier ones finished, as independent clients
 * would send them. Records each request's start, latency and serving pid.
 */
async function paced ({ url, rate, durationMs, timeoutMs = 20000 }) {
  const agent = new Agent({ connections: null, pipelining: 1, connect: { timeout: timeoutMs } })
  const samples = []
  const errors = {}
  const failures = []
  const pending = []
  const deadline = Date.now() + durationMs
  while (Date.now() < deadline) {
    const start = Date.now()
    pending.push(request(url, { dispatcher: agent, reset: true, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
      .then(async res => {
        const body = JSON.parse(await res.body.text())
        samples.push({ start, ms: Date.now() - start, pid: body.pid, status: res.statusCode })
      }, err => {
        errors[err.code ?? err.name] = (errors[err.code ?? err.name] ?? 0) + 1
        failures.push({ start, code: err.code ?? err.name })
      }))
    await sleep(1000 / rate)
  }
  await Promise.all(pending)
  await agent.close()
  return { requests: pending.length, ok: samples.filter(s => s.status === 200).length, errors, samples, failures }
}

function hasCommand (cmd) {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** Node majors the package supports; `npm test` runs the suite's core on each. */
const NODE_MAJORS = [20, 22, 24, 26]

/**
 * A Node binary of this major and arch, from the npm package node-linux-<arch>@major
 * installed into .node<major>/ (x64) or .node<major>-<arch>/ on first use; on
 * x64, this process's own Node when the major matches. { bin, why }: why says
 * why there is none.
 */
function nodeBinary (major, arch = 'x64') {
  if (arch === 'x64' && process.arch === 'x64' && Number(process.versions.node.split('.')[0]) === major) return { bin: process.execPath, why: null }
  if (process.arch !== 'x64' || process.platform !== 'linux') return { bin: null, why: `node-linux-${arch} is fetched for x64 Linux hosts only, this is ${process.platform}-${process.arch}` }
  const prefix = path.join(ROOT, arch === 'x64' ? `.node${major}` : `.node${major}-${arch}`)
  const bin = path.join(prefix, 'node_modules', `node-linux-${arch}`, 'bin', 'node')
  if (fs.existsSync(bin)) return { bin, why: null }
  try {
    fs.mkdirSync(prefix, { recursive: true })
    // --force: npm refuses a package whose "cpu" is not this machine's.
    execFileSync('npm', ['install', '--prefix', prefix, '--no-save', '--no-package-lock', '--no-audit', '--no-fund', ...(arch === process.arch ? [] : ['--force']), `node-linux-${arch}@${major}`],
      { stdio: 'ignore', timeout: 240000 })
    return fs.existsSync(bin) ? { bin, why: null } : { bin: null, why: `npm installed node-linux-${arch}@${major} without bin/node` }
  } catch (err) {
    return { bin: null, why: `could not install node-linux-${arch}@${major} from the npm registry: ${err.message.split('\n')[0]}` }
  }
}

/** startCli's wrap option that runs the CLI on another Node binary. */
function onNode (bin) {
  // sh -c 'exec bin "$@"' $0 args: $0 is startCli's process.execPath, dropped.
  return ['sh', '-c', `exec ${JSON.stringify(bin)} "$@"`]
}

const PREBUILT = ['linux-x64/node.napi.glibc.node', 'linux-x64/node.napi.musl.node', 'linux-arm64/node.napi.glibc.node', 'linux-arm64/node.napi.musl.node']

/** null when prebuilds/ holds all four binaries (npm test makes them first), else why not. */
function prebuildsMissing () {
  const missing = PREBUILT.filter(f => !fs.existsSync(path.join(ROOT, 'prebuilds', f)))
  return missing.length === 0 ? null : `prebuilds/ lacks ${missing.join(', ')} (node native/prebuild.mjs makes them)`
}

/**
 * A directory of symlinks to node, npm and a few shell basics, to use as the
 * whole PATH of a machine without build tools: no cc, c++, make or python.
 */
function toolchainFreePath (dir) {
  fs.mkdirSync(dir, { recursive: true })
  const link = (name, target) => fs.symlinkSync(target, path.join(dir, name))
  link('node', process.execPath)
  const npmCli = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin')
  link('npm', path.join(npmCli, 'npm-cli.js'))
  link('npx', path.join(npmCli, 'npx-cli.js'))
  for (const cmd of ['sh', 'cat', 'ls', 'mkdir', 'rm', 'cp', 'mv', 'env', 'uname']) {
    const found = execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim()
    link(cmd, found)
  }
  return dir
}

module.exports = { ROOT, CLI, FIXTURES, fdCount, tcpFdCount, freePort, alive, childrenOf, processesWith, sleep, waitFor, spawnUntil, fastifyStart, startCli, load, paced, hasCommand }

Object.assign(module.exports, { NODE_MAJORS, nodeBinary, onNode, prebuildsMissing, toolchainFreePath })
