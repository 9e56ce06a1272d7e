// New TLS connections per second with session reuse: fastify-reuseport
// against Node's cluster (round-robin; its primary hands the first worker's
// ticket key to the others) and core reusePort (Node 22.12+ listen({
// reusePort }): N processes, each with its own key). All on Node 24 (core
// reusePort needs 22.12+), 2 workers, an RSA 2048 certificate by default.
//
// The client, by default: --conns `openssl s_time -reuse -www /` processes
// (C, cheap next to a server's full handshake), each making new connections
// one after another offering the session of its first, with one GET each;
// s_time marks each connection that resumed ('r'). --client node: --conns
// loops of Node's tls client instead (a process of their own), each offering
// the session its last connection received (much costlier per connection:
// the client then bounds the rate). 1 s of warm-up, then --secs s; modes
// interleaved, --reps rounds.
//
//   flock /tmp/fr-load.lock node bench/tls.mjs [--reps 3] [--secs 5] [--conns 4] [--cert rsa|ec] [--tls 1.2|1.3] [--client openssl|node]
import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { NODE24, ROOT, childrenOf, freePort, hasNode24, sleep } from './lib.mjs'

const { values } = parseArgs({
  options: {
    reps: { type: 'string', default: '3' },
    secs: { type: 'string', default: '5' },
    conns: { type: 'string', default: '4' },
    cert: { type: 'string', default: 'rsa' },
    tls: { type: 'string', default: '1.3' },
    client: { type: 'string', default: 'openssl' },
    'run-client': { type: 'string' }
  }
})
const VERSION = values.tls === '1.2' ? 'TLSv1.2' : 'TLSv1.3'

/** openssl s_time: `conns` processes for `secs`; connections, and those marked 'r' (resumed). */
async function stime (port, secs, conns) {
  const one = () => new Promise(resolve => {
    const c = spawn('openssl', ['s_time', '-connect', `127.0.0.1:${port}`, '-reuse', '-www', '/', '-time', String(secs), values.tls === '1.2' ? '-tls1_2' : '-tls1_3'], { stdio: ['ignore', 'pipe', 'ignore'] })
    let out = ''
    c.stdout.on('data', d => { out += d })
    c.once('exit', () => {
      // The progress line: one character per connection.
      const marks = (/starting\n([^\n]*)\n/.exec(out)?.[1] ?? '').replace(/[^!-~]/g, '')
      resolve({ connections: marks.length, resumed: [...marks].filter(ch => ch === 'r').length, errors: 0 })
    })
  })
  const all = await Promise.all(Array.from({ length: conns }, one))
  return { connections: all.reduce((n, r) => n + r.connections, 0), resumed: all.reduce((n, r) => n + r.resumed, 0), errors: 0 }
}

/** Node's tls client: `--run-client port` runs the loops and prints one JSON line. */
async function client (port, secs, conns) {
  const result = { connections: 0, resumed: 0, errors: 0 }
  const deadline = Date.now() + secs * 1000
  const once = session => new Promise(resolve => {
    let latest = session
    let reused = false
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, session, minVersion: VERSION, maxVersion: VERSION })
    socket.on('session', s => { latest = s })
    socket.once('secureConnect', () => {
      reused = socket.isSessionReused()
      socket.write('GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n')
    })
    socket.on('data', () => {})
    socket.once('error', () => { result.errors++ })
    socket.once('close', hadError => {
      if (!hadError) {
        result.connections++
        if (reused) result.resumed++
      }
      resolve(latest)
    })
  })
  await Promise.all(Array.from({ length: conns }, async () => {
    let session
    while (Date.now() < deadline) session = await once(session)
  }))
  process.stdout.write(JSON.stringify(result) + '\n')
}

if (values['run-client'] !== undefined) {
  await client(Number(values['run-client']), Number(values.secs), Number(values.conns))
  process.exit(0)
}

if (!hasNode24()) {
  console.error('bench: needs Node 24 in .node24/ (test/helpers.js nodeBinary(24) installs it)')
  process.exit(1)
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fr-bench-tls-'))
const key = path.join(dir, 'key.pem')
const cert = path.join(dir, 'cert.pem')
execFileSync('openssl', ['req', '-x509', '-newkey', values.cert === 'ec' ? 'ec' : 'rsa:2048', ...(values.cert === 'ec' ? ['-pkeyopt', 'ec_paramgen_curve:P-256'] : []),
  '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' })

const SERVERS = path.join(ROOT, 'bench', 'servers')
const CLI = path.join(ROOT, 'dist', 'lib', 'cli.js')
const WORKERS = 2
const MODES = {
  'fastify-reuseport': port => [NODE24, [CLI, 'start', '-w', String(WORKERS), '-o', '-a', '127.0.0.1', '-p', String(port), path.join(SERVERS, 'tls-app.js')], {}],
  'cluster-rr': port => [NODE24, [path.join(SERVERS, 'cluster.js')], { SCHED: 'rr' }],
  'core-reusePort': port => [NODE24, [path.join(SERVERS, 'naive.js')], { CHILD: 'single.js', REUSE_PORT: '1' }]
}

async function run (mode) {
  const port = await freePort()
  const [bin, args, extra] = MODES[mode](port)
  const env = { ...process.env, ...extra, PORT: String(port), WORKERS: String(WORKERS), TLS_KEY: key, TLS_CERT: cert }
  const server = spawn(bin, args, { env, stdio: ['ignore', 'ignore', 'inherit'] })
  const measure = secs => values.client === 'openssl'
    ? stime(port, secs, Number(values.conns))
    : new Promise((resolve, reject) => {
      const c = spawn(process.execPath, [fileURLToPath(import.meta.url), '--run-client', String(port), '--secs', String(secs), '--conns', values.conns, '--tls', values.tls], { stdio: ['ignore', 'pipe', 'inherit'] })
      let out = ''
      c.stdout.on('data', d => { out += d })
      c.once('exit', code => code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`client exited ${code}`)))
    })
  try {
    for (let i = 0; i < 300; i++) {
      const ok = await new Promise(resolve => {
        const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => { s.destroy(); resolve(true) })
        s.once('error', () => resolve(false))
      })
      if (ok) break
      await sleep(100)
    }
    await measure(1)
    const secs = Number(values.secs)
    const r = await measure(secs)
    return { perSec: Math.round(r.connections / secs), resumedPct: Math.round(1000 * r.resumed / Math.max(1, r.connections)) / 10, errors: r.errors }
  } finally {
    for (const pid of childrenOf(server.pid)) try { process.kill(pid, 'SIGKILL') } catch {}
    server.kill('SIGKILL')
    await sleep(300)
  }
}

const results = Object.fromEntries(Object.keys(MODES).map(m => [m, []]))
try {
  for (let i = 0; i < Number(values.reps); i++) {
    for (const mode of Object.keys(MODES)) results[mode].push(await run(mode))
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}
const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const ours = median(results['fastify-reuseport'].map(r => r.perSec))
console.log(`TLS ${values.tls}, ${values.cert === 'ec' ? 'ECDSA P-256' : 'RSA 2048'} certificate, ${WORKERS} workers, ${values.conns} ${values.client === 'openssl' ? 'openssl s_time -reuse processes' : 'Node tls client loops'}, ${values.secs} s x ${values.reps} interleaved (Node ${execFileSync(NODE24, ['-p', 'process.version']).toString().trim()})`)
for (const [mode, runs] of Object.entries(results)) {
  const m = median(runs.map(r => r.perSec))
  console.log(`${mode.padEnd(18)} ${runs.map(r => `${r.perSec}/s (${r.resumedPct}% resumed${r.errors ? `, ${r.errors} errors` : ''})`).join(', ')}; median ${m}/s, ours / this = ${(ours / m).toFixed(2)}`)
}
