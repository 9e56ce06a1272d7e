// A chaos run: real client load (wrk, keep-alive and new-connection clients at
// once) against a server while a fixed sequence of rolling restarts, kill -9s
// of random workers and scale changes runs. Reports requests, non-2xx and
// socket errors per scenario, for fastify-reuseport and for what users run
// instead: a naive reuseport deployment and Node's cluster.
//
//   node bench/chaos.mjs [--seconds 10] [--modes a,b] [--out dir] [--smoke] [--h2-baseline checkout]
//
// The HTTP/2 scenario (fastify-reuseport modes only: the others serve
// HTTP/1.1) runs bench/h2load.mjs, sessions kept open across rolling restarts
// of an h2c app (bench/servers/h2.js, -o). --h2-baseline runs it against
// another checkout's build too (dist/lib/cli.js), for a before/after.
//
// As root with ip(8), everything runs in a network namespace made here, so
// that net.ipv4.tcp_migrate_req can be set per mode without touching the host.
import { execFileSync, spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { ROOT, childrenOf, failed, freePort, hasWrk, launch, sleep, wrk } from './lib.mjs'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    modes: { type: 'string' },
    out: { type: 'string', default: path.join(ROOT, 'bench', 'results') },
    smoke: { type: 'boolean', default: false },
    'h2-baseline': { type: 'string' }
  }
})
if (!hasWrk()) {
  console.error('chaos: wrk is not installed (Debian package wrk: apt-get install wrk)')
  process.exit(1)
}
const seconds = values.smoke ? 5 : Number(values.seconds)
const rounds = values.smoke ? 1 : 3
const workers = 2
const log = msg => process.stderr.write(msg + '\n')

function canNetns () {
  if (process.getuid?.() !== 0) return false
  try {
    const name = `frp-chaos-probe-${process.pid}`
    execFileSync('ip', ['netns', 'add', name], { stdio: 'ignore' })
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}
const netns = canNetns()
const allModes = ['naive-reuseport', 'cluster-rr', 'fastify-reuseport', ...(netns ? ['fastify-reuseport+migrate'] : [])]
const modes = values.modes?.split(',') ?? allModes
if (!netns) log('chaos: not root or no network namespaces: tcp_migrate_req stays as the host has it, and the +migrate mode is skipped')

/** A namespace with loopback up and tcp_migrate_req set; null when we cannot make one. */
function makeNamespace (migrate) {
  if (!netns) return null
  const name = `frp-chaos-${crypto.randomBytes(3).toString('hex')}`
  execFileSync('ip', ['netns', 'add', name])
  const exec = (...cmd) => execFileSync('ip', ['netns', 'exec', name, ...cmd], { encoding: 'utf8' })
  exec('ip', 'link', 'set', 'lo', 'up')
  exec('sysctl', '-qw', `net.ipv4.tcp_migrate_req=${migrate ? 1 : 0}`)
  return { name, wrap: ['ip', 'netns', 'exec', name], exec, remove: () => execFileSync('ip', ['netns', 'del', name]) }
}

async function waitOutput (server, re, from, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs
  while (!re.test(server.output().slice(from))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}`)
    await sleep(20)
  }
}

/** Established connections the process holds on the server port (ss -tnp). */
function connectionsOf (ns, port, pid) {
  const cmd = ['ss', '-Htnp', 'state', 'established', `sport = :${port}`]
  const out = ns ? ns.exec(...cmd) : execFileSync(cmd[0], cmd.slice(1), { encoding: 'utf8' })
  return out.split('\n').filter(l => l.includes(`pid=${pid},`)).length
}

const scenarios = {
  async restarts (server) {
    const frp = server.mode.startsWith('fastify-reuseport')
    for (let i = 0; i < rounds; i++) {
      const from = server.output().length
      server.proc.kill('SIGHUP')
      await waitOutput(server, frp ? /reload: all \d+ slots replaced/ : /reloaded/, from)
      await sleep(500)
    }
  },
  async crashes (server, ctx) {
    for (let i = 0; i < rounds; i++) {
      const pids = server.workerPids()
      const victim = pids[Math.floor(Math.random() * pids.length)]
      ctx.killedConnections += connectionsOf(ctx.ns, ctx.port, victim)
      process.kill(victim, 'SIGKILL')
      ctx.kills++
      const deadline = Date.now() + 20000
      while (!(server.workerPids().length >= workers && !server.workerPids().includes(victim))) {
        if (Date.now() > deadline) throw new Error('no replacement worker')
        await sleep(20)
      }
      await sleep(800)
    }
  },
  // Only fastify-reuseport can add and retire workers without dropping: the others have no such command.
  async scale (server) {
    for (let i = 0; i < rounds; i++) {
      let from = server.output().length
      server.proc.kill('SIGTTIN')
      await waitOutput(server, new RegExp(`scale: slot ${workers + 1} of ${workers + 1} added`), from)
      await sleep(500)
      from = server.output().length
      server.proc.kill('SIGTTOU')
      await waitOutput(server, new RegExp(`scale: slot ${workers + 1} retired, ${workers} left`), from)
      await sleep(300)
    }
  }
}

const rows = []
for (const mode of modes) {
  const migrate = mode.endsWith('+migrate')
  const ns = makeNamespace(migrate)
  try {
    for (const [name, action] of Object.entries(scenarios)) {
      if (name === 'scale' && !mode.startsWith('fastify-reuseport')) continue
      const port = await freePort()
      const server = await launch(migrate ? 'fastify-reuseport' : mode, { port, workers, wrap: ns?.wrap ?? [] })
      server.mode = mode
      // launch() sees the ip(8) wrapper exec into node: its pid is the server's.
      const ctx = { ns, port, kills: 0, killedConnections: 0 }
      try {
        const url = `http://127.0.0.1:${port}/`
        const clients = Promise.all([
          wrk({ url, seconds, connections: 32, wrap: ns?.wrap ?? [] }),
          wrk({ url, seconds, connections: 32, close: true, wrap: ns?.wrap ?? [] })
        ])
        await sleep(1000)
        await action(server, ctx)
        const [keepAlive, fresh] = await clients
        for (const [client, r] of [['keep-alive', keepAlive], ['new connections', fresh]]) {
          const row = { scenario: name, mode: migrate ? 'fastify-reuseport (tcp_migrate_req=1)' : mode === 'fastify-reuseport' && netns ? 'fastify-reuseport (tcp_migrate_req=0)' : mode, client, requests: r.requests, non2xx: r.non2xx, ...r.errors, failed: failed(r) }
          if (name === 'crashes') Object.assign(row, { kills: ctx.kills, killedConnections: ctx.killedConnections })
          rows.push(row)
          log(`${name.padEnd(9)} ${row.mode.padEnd(38)} ${client.padEnd(15)} ${String(r.requests).padStart(7)} requests, failed ${row.failed} ${JSON.stringify(r.errors)}${name === 'crashes' ? ` (killed workers held ${ctx.killedConnections} connections)` : ''}`)
        }
      } finally {
        await server.stop()
      }
    }
  } finally {
    ns?.remove()
  }
}

// HTTP/2: h2c sessions across rolling restarts.
const h2Rows = []
/** fastify-reuseport start -o bench/servers/h2.js from a given build; resolves once it serves. */
async function launchH2 (cli, { port, wrap }) {
  const argv = [...wrap, process.execPath, cli, 'start', '-w', String(workers), '-a', '127.0.0.1', '-p', String(port), '-o', path.join(ROOT, 'bench', 'servers', 'h2.js')]
  const proc = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout.on('data', d => { out += d })
  proc.stderr.on('data', d => { out += d })
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`h2 server not ready in 30 s: ${out}`)), 30000)
    proc.stdout.on('data', () => { if (/safety nets/.test(out)) { clearTimeout(timer); resolve() } })
    proc.once('exit', code => { clearTimeout(timer); reject(new Error(`h2 server exited ${code}: ${out}`)) })
  })
  return {
    proc,
    output: () => out,
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

function h2load ({ url, wrap }) {
  return new Promise((resolve, reject) => {
    const argv = [...wrap, process.execPath, path.join(ROOT, 'bench', 'h2load.mjs'), '--url', url, '--seconds', String(seconds), '--sessions', '8', '--streams', '4']
    const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] })
    let text = ''
    p.stdout.on('data', d => { text += d })
    p.once('exit', code => code === 0 ? resolve(JSON.parse(text)) : reject(new Error(`h2load exited ${code}: ${text}`)))
  })
}

const h2Builds = [['fastify-reuseport', path.join(ROOT, 'dist', 'lib', 'cli.js')]]
if (values['h2-baseline']) h2Builds.push([`baseline (${path.basename(path.resolve(values['h2-baseline']))})`, path.join(path.resolve(values['h2-baseline']), 'dist', 'lib', 'cli.js')])
for (const mode of modes.filter(m => m.startsWith('fastify-reuseport'))) {
  const migrate = mode.endsWith('+migrate')
  const ns = makeNamespace(migrate)
  try {
    for (const [build, cli] of h2Builds) {
      const port = await freePort()
      const server = await launchH2(cli, { port, wrap: ns?.wrap ?? [] })
      try {
        const client = h2load({ url: `http://127.0.0.1:${port}/`, wrap: ns?.wrap ?? [] })
        await sleep(1000)
        const from = server.output().length
        for (let i = 0; i < rounds; i++) {
          const mark = server.output().length
          server.proc.kill('SIGHUP')
          await waitOutput(server, /reload: all \d+ slots replaced/, mark)
          await sleep(500)
        }
        const r = await client
        const crashes = (server.output().slice(from).match(/TypeError|exited with code [1-9]/g) ?? []).length
        const row = { scenario: 'h2 restarts', build, mode: `tcp_migrate_req=${migrate ? 1 : 0}`, requests: r.requests, ok: r.ok, failed: r.failed, retried: r.retried, sessionsOpened: r.sessionsOpened, goaways: r.goaways, errors: r.errors, workerCrashLines: crashes }
        h2Rows.push(row)
        log(`h2        ${build.padEnd(38)} ${row.mode} ${String(r.requests).padStart(7)} requests, failed ${r.failed} ${JSON.stringify(r.errors)}, ${r.sessionsOpened} sessions, ${r.goaways} GOAWAYs, ${r.retried} refused streams retried, ${crashes} crash lines`)
      } finally {
        await server.stop()
      }
    }
  } finally {
    ns?.remove()
  }
}

const md = ['| scenario | mode | client | requests | non-2xx | connect | read | write | timeout | failed |', '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
for (const r of rows) {
  const note = r.scenario === 'crashes' ? ` (${r.kills} kill -9; the killed workers held ${r.killedConnections} connections)` : ''
  md.push(`| ${r.scenario}${note} | ${r.mode} | ${r.client} | ${r.requests} | ${r.non2xx} | ${r.connect} | ${r.read} | ${r.write} | ${r.timeout} | ${r.failed} |`)
}
const header = `Chaos run ${new Date().toISOString().slice(0, 10)}: ${workers} workers, ${rounds} actions per scenario, wrk -t1 -c32 keep-alive and -c32 \`Connection: close\` at once for ${seconds} s per scenario${netns ? ', inside a network namespace' : ''}. Command: \`node bench/chaos.mjs${values.smoke ? ' --smoke' : ''}\`.\n\n`
fs.mkdirSync(values.out, { recursive: true })
fs.writeFileSync(path.join(values.out, 'chaos.json'), JSON.stringify({ date: new Date().toISOString(), seconds, rounds, workers, netns, rows, h2: h2Rows }, null, 2) + '\n')
const h2md = h2Rows.length === 0
  ? ''
  : `\nHTTP/2 (h2c, \`-o\` with \`{ http2: true }\`): bench/h2load.mjs, 8 sessions × 4 streams in flight (node:http2; a new session only after GOAWAY; a refused stream retried once), ${rounds} SIGHUPs in ${seconds} s.\n\n` +
    ['| build | namespace | requests | failed | errors | sessions opened | GOAWAY events | refused, retried | worker crash lines |', '| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |',
      ...h2Rows.map(r => `| ${r.build} | ${r.mode} | ${r.requests} | ${r.failed} | ${Object.entries(r.errors).map(([k, v]) => `${k} ${v}`).join(', ') || '-'} | ${r.sessionsOpened} | ${r.goaways} | ${r.retried} | ${r.workerCrashLines} |`)].join('\n') + '\n'
fs.writeFileSync(path.join(values.out, 'chaos.md'), header + md.join('\n') + '\n' + h2md)
log(`chaos: wrote ${path.relative(process.cwd(), values.out)}/chaos.{json,md}`)
