// Few long-lived connections (issue 12): a proxy's small keep-alive pool
// carries all the traffic, and the kernel's hash splits 4 connections on 2
// workers 3–1 or 4–0 in 62.5% of cases, for as long as they live. Each trial
// starts a fresh server (a fresh hash), runs wrk with 4 (then 8) keep-alive
// connections, and records per-worker connection counts (from /proc, after
// `settleMs` and near the end) and req/s. Modes: Node 22's core reusePort,
// cluster round-robin, and fastify-reuseport with balancing on and off
// (`--balance on|off`; "n/a" while the CLI lacks the flag, and then the current
// CLI is measured as is). Then new-connection throughput (wrk -c64,
// Connection: close) with balancing on and off. Writes
// bench/results/fewconns.{json,md} (a smoke run writes to a temporary directory).
//
//   node bench/fewconns.mjs [--trials 10] [--seconds 5] [--settle-ms 2000] [--conns 4,8] [--out dir] [--smoke]
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { NODE22, ROOT, failed, freePort, hasNode22, hasWrk, launch, sleep, wrk } from './lib.mjs'

const { values } = parseArgs({
  options: {
    trials: { type: 'string', default: '10' },
    seconds: { type: 'string', default: '5' },
    'settle-ms': { type: 'string', default: '2000' },
    conns: { type: 'string', default: '4,8' },
    out: { type: 'string' },
    smoke: { type: 'boolean', default: false }
  }
})
if (!hasWrk()) {
  console.error('bench: wrk is not installed (Debian package wrk: apt-get install wrk)')
  process.exit(1)
}
const smoke = values.smoke
const trials = smoke ? 1 : Number(values.trials)
const seconds = smoke ? 3 : Number(values.seconds)
const settleMs = smoke ? 1500 : Number(values['settle-ms'])
const connCounts = values.conns.split(',').map(Number)
const workers = 2
const out = values.out ?? (smoke ? fs.mkdtempSync(path.join(os.tmpdir(), 'fewconns-')) : path.join(ROOT, 'bench', 'results'))
const log = msg => process.stderr.write(msg + '\n')

// The lead adds --balance on|off (and FASTIFY_BALANCE) to `fastify-reuseport start`.
const cliHelp = execFileSync(process.execPath, [path.join(ROOT, 'dist', 'lib', 'cli.js'), 'start', '--help'], { encoding: 'utf8' })
const balanceFlag = /--balance\b/.test(cliHelp)

// [label, lib.mjs mode, extra CLI args, why it cannot run (null: it can)]
const modes = [
  ['Node 22 core reusePort', 'node22-reuseport', [], hasNode22() ? null : `no Node 22 in .node22/ (the unit test node22.test.js installs it)`],
  ['cluster round-robin', 'cluster-rr', [], null],
  ...(balanceFlag ? [] : [['fastify-reuseport (current CLI)', 'fastify-reuseport', [], null]]),
  ['fastify-reuseport, balance on', 'fastify-reuseport', ['--balance', 'on'], balanceFlag ? null : 'the CLI has no --balance flag yet'],
  ['fastify-reuseport, balance off', 'fastify-reuseport', ['--balance', 'off'], balanceFlag ? null : 'the CLI has no --balance flag yet']
]

/** Socket inodes of established TCP connections whose local port is `port`. */
function establishedInodes (port) {
  const hex = port.toString(16).toUpperCase().padStart(4, '0')
  const inodes = new Set()
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = ''
    try { text = fs.readFileSync(table, 'utf8') } catch { continue }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f.length > 9 && f[1].endsWith(':' + hex) && f[3] === '01') inodes.add(f[9])
    }
  }
  return inodes
}

/** Established connections on `port` held by each pid, in pid order. */
function connectionsPerPid (pids, port) {
  const inodes = establishedInodes(port)
  return pids.map(pid => {
    let n = 0
    try {
      for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
        try {
          const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))
          if (m && inodes.has(m[1])) n++
        } catch {}
      }
    } catch {}
    return n
  })
}

const split = counts => [...counts].sort((a, b) => b - a).join('–')

async function keepAliveTrial (label, mode, args, conns) {
  const port = await freePort()
  const server = await launch(mode, { port, workers, args })
  try {
    const url = `http://127.0.0.1:${port}/`
    const pids = server.workerPids().sort((a, b) => a - b)
    const running = wrk({ url, seconds, connections: conns })
    await sleep(settleMs)
    const settled = connectionsPerPid(pids, port)
    await sleep(Math.max(0, seconds * 1000 - settleMs - 500))
    const late = connectionsPerPid(pids, port)
    const r = await running
    const perWorkerRps = pids.map(pid => (r.pids[String(pid)] ?? 0) / seconds)
    const run = { label, conns, rps: r.rps, failed: failed(r), settled, late, perWorkerRps }
    log(`${label.padEnd(32)} ${conns} conns ${r.rps.toFixed(0).padStart(7)} req/s  connections after ${settleMs} ms ${split(settled)}, at the end ${split(late)}  failed ${run.failed}`)
    return run
  } finally {
    await server.stop()
  }
}

async function newConnTrial (label, mode, args) {
  const port = await freePort()
  const server = await launch(mode, { port, workers, args })
  try {
    const url = `http://127.0.0.1:${port}/`
    await wrk({ url, seconds: 1, close: true }) // warm-up
    const r = await wrk({ url, seconds, close: true })
    log(`${label.padEnd(32)} new connections ${r.rps.toFixed(0).padStart(7)} req/s  failed ${failed(r)}`)
    return { label, rps: r.rps, failed: failed(r) }
  } finally {
    await server.stop()
  }
}

const keepAlive = []
const newConns = []
const runnable = modes.filter(m => m[3] === null)
for (let trial = 1; trial <= trials; trial++) {
  for (const conns of connCounts) {
    // Interleaved: a different mode goes first in every trial.
    const order = runnable.map((_, i) => runnable[(i + trial - 1) % runnable.length])
    for (const [label, mode, args] of order) keepAlive.push({ trial, ...(await keepAliveTrial(label, mode, args, conns)) })
  }
  for (const [label, mode, args] of runnable.filter(m => m[1] === 'fastify-reuseport')) newConns.push({ trial, ...(await newConnTrial(label, mode, args)) })
}

const median = xs => {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
const within1 = counts => Math.max(...counts) - Math.min(...counts) <= 1

const summary = []
for (const conns of connCounts) {
  for (const [label, , , why] of modes) {
    const runs = keepAlive.filter(r => r.label === label && r.conns === conns)
    if (why !== null || runs.length === 0) {
      summary.push({ label, conns, na: why ?? 'not run' })
      continue
    }
    const splits = {}
    for (const r of runs) splits[split(r.settled)] = (splits[split(r.settled)] ?? 0) + 1
    summary.push({
      label,
      conns,
      trials: runs.length,
      medianRps: median(runs.map(r => r.rps)),
      minRps: Math.min(...runs.map(r => r.rps)),
      maxRps: Math.max(...runs.map(r => r.rps)),
      splits,
      evenAfterSettle: runs.filter(r => within1(r.settled)).length,
      evenAtEnd: runs.filter(r => within1(r.late)).length,
      failed: runs.reduce((a, r) => a + r.failed, 0)
    })
  }
}
const med = (label, conns) => summary.find(s => s.label === label && s.conns === conns)?.medianRps ?? NaN
const newMed = label => median(newConns.filter(r => r.label === label).map(r => r.rps))
const ours = balanceFlag ? 'fastify-reuseport, balance on' : 'fastify-reuseport (current CLI)'
const ratio = (a, b) => Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : null
const goals = {
  vsClusterRr4: { ratio: ratio(med(ours, 4), med('cluster round-robin', 4)), goal: 0.97 },
  vsCoreReusePort4: { ratio: ratio(med(ours, 4), med('Node 22 core reusePort', 4)), goal: 1.15 },
  newConnectionsOnVsOff: { ratio: ratio(newMed('fastify-reuseport, balance on'), newMed('fastify-reuseport, balance off')), goal: 0.97 }
}

const fmt = x => x === null || !Number.isFinite(x) ? 'n/a' : x.toFixed(2)
const md = [
  `Few long-lived connections: ${workers} workers, wrk -t1 -c<n> keep-alive for ${seconds} s on a fresh server per trial, ${trials} trial(s), interleaved. ` +
  `Connection counts per worker from /proc, ${settleMs} ms into the run. Command: \`node bench/fewconns.mjs${smoke ? ' --smoke' : ''}\`.`,
  '',
  '| mode | conns | median req/s (min–max) | splits after settling | within one | within one at the end | failed |',
  '| --- | ---: | ---: | --- | ---: | ---: | ---: |',
  ...summary.map(s => s.na
    ? `| ${s.label} | ${s.conns} | n/a | n/a (${s.na}) | n/a | n/a | n/a |`
    : `| ${s.label} | ${s.conns} | ${s.medianRps.toFixed(0)} (${s.minRps.toFixed(0)}–${s.maxRps.toFixed(0)}) | ` +
      `${Object.entries(s.splits).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ×${v}`).join(', ')} | ` +
      `${s.evenAfterSettle} of ${s.trials} | ${s.evenAtEnd} of ${s.trials} | ${s.failed} |`),
  '',
  `New connections (wrk -c64, Connection: close), median req/s: balance on ${fmt(newMed('fastify-reuseport, balance on'))}, off ${fmt(newMed('fastify-reuseport, balance off'))}` +
  `${balanceFlag ? '' : ' (n/a: the CLI has no --balance flag yet)'}.`,
  '',
  '| goal | ratio | target |',
  '| --- | ---: | ---: |',
  `| ${ours} ÷ cluster round-robin, 4 connections | ${fmt(goals.vsClusterRr4.ratio)} | ≥ 0.97 |`,
  `| ${ours} ÷ Node 22 core reusePort, 4 connections | ${fmt(goals.vsCoreReusePort4.ratio)} | ≥ 1.15 |`,
  `| new connections, balance on ÷ off | ${fmt(goals.newConnectionsOnVsOff.ratio)} | ≥ 0.97 |`,
  ''
].join('\n')

const versions = { node: process.version, node22: hasNode22() ? execFileSync(NODE22, ['-v'], { encoding: 'utf8' }).trim() : null }
const results = {
  date: new Date().toISOString(),
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? 'unknown', kernel: os.release() },
  versions,
  command: `node bench/fewconns.mjs --trials ${trials} --seconds ${seconds} --settle-ms ${settleMs} --conns ${connCounts.join(',')}${smoke ? ' --smoke' : ''}`,
  workers,
  balanceFlag,
  summary,
  goals,
  keepAlive,
  newConns
}
fs.mkdirSync(out, { recursive: true })
fs.writeFileSync(path.join(out, 'fewconns.json'), JSON.stringify(results, null, 2) + '\n')
fs.writeFileSync(path.join(out, 'fewconns.md'), md)
process.stdout.write(md)
log(`bench: wrote ${out}/fewconns.{json,md}`)
