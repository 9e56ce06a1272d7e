// Few long-lived connections (issue 12): a proxy's small keep-alive pool
// carries all the traffic, and the kernel's hash splits 4 connections on 2
// workers 3–1 or 4–0 in 62.5% of cases, for as long as they live. Each trial
// starts a fresh server (a fresh hash), runs wrk with 4 (then 8) keep-alive
// connections, and records per-worker connection counts (from /proc, every
// 100 ms) and req/s. Modes: Node 22's core reusePort, cluster round-robin, and
// fastify-reuseport with balancing on and off. Then new-connection throughput
// (wrk -c64, Connection: close) with balancing on and off.
//
// Two scenarios:
// - proxy (the goals are measured here): each request costs the worker 1 ms of
//   CPU (/cpu), and each connection waits 1 ms after a response before its
//   next request (wrk's delay()), standing in for the round trip to a proxy on
//   another host. An uneven split then leaves one worker saturated and the
//   other idle between requests, as it does in production.
// - hello: hello world with no gap, wrk on the same 2 cores as the workers.
//   Here a worker that gets no connection leaves its core to wrk, so an
//   uneven split costs little or even gains; it is reported, not judged.
// Writes bench/results/fewconns.{json,md} (a smoke run writes to a temporary directory).
//
//   node bench/fewconns.mjs [--trials 10] [--scenarios proxy,hello] [--seconds N] [--settle-ms 2000] [--conns 4,8] [--out dir] [--smoke]
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { NODE22, ROOT, failed, freePort, hasNode22, hasWrk, launch, sleep, wrk } from './lib.mjs'

const { values } = parseArgs({
  options: {
    trials: { type: 'string', default: '10' },
    scenarios: { type: 'string', default: 'proxy,hello' },
    seconds: { type: 'string' },
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
// What each scenario requests, the gap between requests, seconds per trial, and what it stands for.
const SCENARIOS = {
  proxy: { path: '/cpu', delayMs: 1, seconds: 10, what: 'each request costs the worker 1 ms of CPU; each connection waits 1 ms (wrk delay()) between a response and its next request, the round trip to a proxy on another host' },
  hello: { path: '/', delayMs: 0, seconds: 3, what: 'hello world, no gap between requests, wrk on the same 2 cores as the workers' }
}
const scenarios = values.scenarios.split(',').map(name => {
  const sc = SCENARIOS[name]
  if (!sc) {
    console.error(`bench: unknown scenario ${name} (known: ${Object.keys(SCENARIOS).join(', ')})`)
    process.exit(1)
  }
  return { name, ...sc, seconds: smoke ? 3 : Number(values.seconds ?? sc.seconds) }
})
const newConnSeconds = smoke ? 2 : 5
const settleMs = smoke ? 1500 : Number(values['settle-ms'])
const connCounts = values.conns.split(',').map(Number)
const workers = 2
const out = values.out ?? (smoke ? fs.mkdtempSync(path.join(os.tmpdir(), 'fewconns-')) : path.join(ROOT, 'bench', 'results'))
const log = msg => process.stderr.write(msg + '\n')

// [label, lib.mjs mode, extra CLI args, why it cannot run (null: it can)]
const ON = 'fastify-reuseport, balance on'
const OFF = 'fastify-reuseport, balance off'
const CORE = 'Node 22 core reusePort'
const RR = 'cluster round-robin'
const modes = [
  [CORE, 'node22-reuseport', [], hasNode22() ? null : 'no Node 22 in .node22/ (npm test installs it)'],
  [RR, 'cluster-rr', [], null],
  [ON, 'fastify-reuseport', ['--balance', 'on'], null],
  [OFF, 'fastify-reuseport', ['--balance', 'off'], null]
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
const within1 = counts => Math.max(...counts) - Math.min(...counts) <= 1

/**
 * When the split became even for good: the time of the first sample from
 * which every sample holds all `conns` connections within one of each other;
 * null if the last sample is not even.
 */
function evenFrom (samples, conns) {
  let from = null
  for (const { ms, counts } of samples) {
    const even = counts.reduce((a, b) => a + b, 0) === conns && within1(counts)
    if (!even) from = null
    else if (from === null) from = ms
  }
  return from
}

async function keepAliveTrial (sc, label, mode, args, conns) {
  const port = await freePort()
  const server = await launch(mode, { port, workers, args })
  try {
    const url = `http://127.0.0.1:${port}${sc.path}`
    const pids = server.workerPids().sort((a, b) => a - b)
    const started = Date.now()
    const running = wrk({ url, seconds: sc.seconds, connections: conns, delayMs: sc.delayMs })
    // Sampled until shortly before wrk's end, when it closes its connections.
    const samples = []
    let settled = null
    while (Date.now() - started < sc.seconds * 1000 - 500) {
      const ms = Date.now() - started
      const counts = connectionsPerPid(pids, port)
      samples.push({ ms, counts })
      if (settled === null && ms >= settleMs) settled = counts
      await sleep(100)
    }
    const late = samples[samples.length - 1]?.counts ?? []
    const r = await running
    const perWorkerRps = pids.map(pid => (r.pids[String(pid)] ?? 0) / sc.seconds)
    const run = { scenario: sc.name, label, conns, rps: r.rps, p50ms: r.p50ms, p99ms: r.p99ms, failed: failed(r), settled: settled ?? late, late, evenFromMs: evenFrom(samples, conns), perWorkerRps }
    log(`${sc.name.padEnd(5)} ${label.padEnd(30)} ${conns} conns ${r.rps.toFixed(0).padStart(6)} req/s  after ${settleMs} ms ${split(run.settled)}, at the end ${split(late)}, even from ${run.evenFromMs ?? 'never'} ms  failed ${run.failed}`)
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
    const r = await wrk({ url, seconds: newConnSeconds, close: true })
    log(`${label.padEnd(36)} new connections ${r.rps.toFixed(0).padStart(7)} req/s  failed ${failed(r)}`)
    return { label, rps: r.rps, failed: failed(r) }
  } finally {
    await server.stop()
  }
}

const keepAlive = []
const newConns = []
const runnable = modes.filter(m => m[3] === null)
for (let trial = 1; trial <= trials; trial++) {
  for (const sc of scenarios) {
    for (const conns of connCounts) {
      // Interleaved: a different mode goes first in every trial.
      const order = runnable.map((_, i) => runnable[(i + trial - 1) % runnable.length])
      for (const [label, mode, args] of order) keepAlive.push({ trial, ...(await keepAliveTrial(sc, label, mode, args, conns)) })
    }
  }
  // On and off, in turns first: the first server after the keep-alive trials starts among their TIME_WAITs.
  const ours = runnable.filter(m => m[1] === 'fastify-reuseport')
  if (trial % 2 === 0) ours.reverse()
  for (const [label, mode, args] of ours) newConns.push({ trial, ...(await newConnTrial(label, mode, args)) })
}

const median = xs => {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

const summary = []
for (const sc of scenarios) {
  for (const conns of connCounts) {
    for (const [label, , , why] of modes) {
      const runs = keepAlive.filter(r => r.scenario === sc.name && r.label === label && r.conns === conns)
      if (why !== null || runs.length === 0) {
        summary.push({ scenario: sc.name, label, conns, na: why ?? 'not run' })
        continue
      }
      const splits = {}
      for (const r of runs) splits[split(r.settled)] = (splits[split(r.settled)] ?? 0) + 1
      const evenTimes = runs.map(r => r.evenFromMs).filter(ms => ms !== null)
      summary.push({
        scenario: sc.name,
        label,
        conns,
        trials: runs.length,
        medianRps: median(runs.map(r => r.rps)),
        minRps: Math.min(...runs.map(r => r.rps)),
        maxRps: Math.max(...runs.map(r => r.rps)),
        medianP99ms: median(runs.map(r => r.p99ms)),
        splits,
        evenAfterSettle: runs.filter(r => within1(r.settled)).length,
        evenAtEnd: runs.filter(r => within1(r.late)).length,
        medianEvenFromMs: median(evenTimes),
        failed: runs.reduce((a, r) => a + r.failed, 0)
      })
    }
  }
}
const med = (scenario, label, conns) => summary.find(s => s.scenario === scenario && s.label === label && s.conns === conns)?.medianRps ?? NaN
const newMed = label => median(newConns.filter(r => r.label === label).map(r => r.rps))
const ratio = (a, b) => Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : null
// The throughput goals are judged in the proxy scenario (see the top of this file).
const judged = scenarios.some(sc => sc.name === 'proxy') ? 'proxy' : scenarios[0].name
const goals = {
  vsClusterRr4: { scenario: judged, ratio: ratio(med(judged, ON, 4), med(judged, RR, 4)), goal: 0.97 },
  vsCoreReusePort4: { scenario: judged, ratio: ratio(med(judged, ON, 4), med(judged, CORE, 4)), goal: 1.15 },
  newConnectionsOnVsOff: { ratio: ratio(newMed(ON), newMed(OFF)), goal: 0.97 }
}

const command = `node bench/fewconns.mjs --trials ${trials} --scenarios ${values.scenarios} --settle-ms ${settleMs} --conns ${connCounts.join(',')}${values.seconds ? ` --seconds ${values.seconds}` : ''}${smoke ? ' --smoke' : ''}`
const fmt = x => x === null || !Number.isFinite(x) ? 'n/a' : x.toFixed(2)
const table = sc => [
  `**${sc.name}**: ${sc.what}. wrk -t1 -c<n> \`${sc.path}\` for ${sc.seconds} s per trial.`,
  '',
  '| mode | conns | median req/s (min–max) | median p99 ms | splits after settling | within one after settling | within one at the end | even for good from (median) | failed |',
  '| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |',
  ...summary.filter(s => s.scenario === sc.name).map(s => s.na
    ? `| ${s.label} | ${s.conns} | n/a | n/a | n/a (${s.na}) | n/a | n/a | n/a | n/a |`
    : `| ${s.label} | ${s.conns} | ${s.medianRps.toFixed(0)} (${s.minRps.toFixed(0)}–${s.maxRps.toFixed(0)}) | ${s.medianP99ms.toFixed(1)} | ` +
      `${Object.entries(s.splits).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ×${v}`).join(', ')} | ` +
      `${s.evenAfterSettle} of ${s.trials} | ${s.evenAtEnd} of ${s.trials} | ` +
      `${Number.isFinite(s.medianEvenFromMs) ? `${s.medianEvenFromMs.toFixed(0)} ms` : 'never'} | ${s.failed} |`),
  ''
]
const md = [
  `Few long-lived connections: ${workers} workers, a fresh server per trial, ${trials} trial(s), modes interleaved. ` +
  `Connection counts per worker from /proc every 100 ms; "after settling" is ${settleMs} ms into the run. ` +
  `Command: \`${command}\`.`,
  '',
  ...scenarios.flatMap(table),
  `New connections (hello world, wrk -c64, Connection: close, ${newConnSeconds} s), median req/s: balance on ${fmt(newMed(ON))}, off ${fmt(newMed(OFF))}.`,
  '',
  '| goal | ratio | target |',
  '| --- | ---: | ---: |',
  `| ${judged}: balance on ÷ cluster round-robin, 4 connections | ${fmt(goals.vsClusterRr4.ratio)} | ≥ 0.97 |`,
  `| ${judged}: balance on ÷ Node 22 core reusePort, 4 connections | ${fmt(goals.vsCoreReusePort4.ratio)} | ≥ 1.15 |`,
  `| new connections, balance on ÷ off | ${fmt(goals.newConnectionsOnVsOff.ratio)} | ≥ 0.97 |`,
  ''
].join('\n')

const versions = { node: process.version, node22: hasNode22() ? execFileSync(NODE22, ['-v'], { encoding: 'utf8' }).trim() : null }
const results = {
  date: new Date().toISOString(),
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? 'unknown', kernel: os.release() },
  versions,
  command,
  workers,
  scenarios,
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
