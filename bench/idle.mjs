// What an idle fleet costs: no traffic at all, CPU of the supervisor and of
// each worker over a window, from /proc/<pid>/stat (1/100 s ticks) and
// /proc/<pid>/schedstat (ns), as a share of one core. The curve over worker
// counts for fastify-reuseport (this checkout, and optionally another build
// with --before <dir> for a before/after in the same run), and the peers
// (Node's cluster, PM2 cluster mode, Platformatic Watt) at --peer-workers.
// Writes bench/results/idle.{json,md}.
//
//   node bench/idle.mjs [--workers 2,8,16,32] [--peer-workers 2] [--seconds 10] [--settle 8] [--reps 1]
//                       [--modes fastify-reuseport,cluster-rr,pm2,watt] [--before dir] [--out dir]
//
// With --reps N every measurement runs N times, interleaved, and the table
// shows the median of each column.
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { ROOT, cpuSample, freePort, launch, sleep } from './lib.mjs'
import { peerVersions } from './peers.mjs'

const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: '2,8,16,32' },
    'peer-workers': { type: 'string', default: '2' },
    seconds: { type: 'string', default: '10' },
    // A fresh Node process compiles and collects for its first seconds: measure after.
    settle: { type: 'string', default: '8' },
    reps: { type: 'string', default: '1' },
    modes: { type: 'string', default: 'fastify-reuseport,cluster-rr,pm2,watt' },
    before: { type: 'string' },
    args: { type: 'string', default: '' },
    out: { type: 'string', default: path.join(ROOT, 'bench', 'results') }
  }
})
const seconds = Number(values.seconds)
const log = msg => process.stderr.write(msg + '\n')
const counts = values.workers.split(',').map(Number)
const peerCounts = values['peer-workers'].split(',').map(Number)
const modes = values.modes.split(',')
const extraArgs = values.args ? values.args.split(' ') : []

/** Supervisor and per-worker CPU of a running server, over `seconds`, % of one core. */
async function idleCpu (server) {
  const sup = server.supervisorPid
  const pids = server.workerPids()
  const before = [sup, ...pids].map(p => p === null ? null : cpuSample(p))
  const t0 = process.hrtime.bigint()
  await sleep(seconds * 1000)
  const wall = Number(process.hrtime.bigint() - t0) / 1e9
  const after = [sup, ...pids].map(p => p === null ? null : cpuSample(p))
  const pct = (i, k) => before[i] === null ? null : (after[i][k] - before[i][k]) / (k === 'ns' ? 1e9 : 100) / wall * 100
  const workers = pids.map((_, i) => ({ stat: pct(i + 1, 'ticks'), sched: pct(i + 1, 'ns') }))
  const sum = k => workers.reduce((a, w) => a + w[k], 0)
  return {
    supervisor: sup === null ? null : { stat: pct(0, 'ticks'), sched: pct(0, 'ns') },
    workers: { n: pids.length, stat: sum('stat'), sched: sum('sched'), maxSched: Math.max(...workers.map(w => w.sched)) }
  }
}

const rows = []
async function measure (rep, label, mode, workers, opts = {}) {
  const port = await freePort()
  const server = await launch(mode, { port, workers, ...opts })
  try {
    await sleep(Number(values.settle) * 1000)
    const r = await idleCpu(server)
    const row = { rep, label, mode, count: workers, ...r }
    const f = x => x === null ? '  n/a' : x.toFixed(2).padStart(5)
    log(`${label.padEnd(28)} ${String(workers).padStart(2)} workers: supervisor ${f(r.supervisor?.stat ?? null)}% (sched ${f(r.supervisor?.sched ?? null)}%), all workers ${f(r.workers.stat)}% (sched ${f(r.workers.sched)}%), per worker ${f(r.workers.sched / Math.max(1, r.workers.n))}%`)
    rows.push(row)
  } finally {
    await server.stop()
  }
}

const ours = [['fastify-reuseport', {}], ...(values.before ? [['fastify-reuseport (before)', { root: path.resolve(values.before) }]] : [])]
for (let rep = 0; rep < Number(values.reps); rep++) {
  for (const n of counts) {
    for (const [label, opts] of ours) if (modes.includes('fastify-reuseport')) await measure(rep, label, 'fastify-reuseport', n, { ...opts, args: extraArgs })
    // The peers beside ours at the same count, in the same repetition.
    if (peerCounts.includes(n)) for (const mode of modes.filter(m => m !== 'fastify-reuseport')) await measure(rep, mode, mode, n)
  }
  for (const n of peerCounts.filter(n => !counts.includes(n))) {
    for (const mode of modes.filter(m => m !== 'fastify-reuseport')) await measure(rep, mode, mode, n)
  }
}

const pct = x => x === null || x === undefined ? 'n/a' : x.toFixed(2)
const md = [
  `Idle CPU, no traffic: % of one core over ${seconds} s after ${values.settle} s settling${Number(values.reps) > 1 ? `, median of ${values.reps} interleaved runs` : ''}, from /proc/<pid>/stat (utime + stime; 1/100 s ticks, so 0.1% is one tick of a 10 s window) and, in brackets, /proc/<pid>/schedstat (ns).`,
  `Command: \`node bench/idle.mjs --workers ${values.workers} --peer-workers ${values['peer-workers']} --seconds ${seconds} --settle ${values.settle} --reps ${values.reps}${values.before ? ' --before <main checkout>' : ''}${values.args ? ` --args '${values.args}'` : ''}\`.`,
  '',
  '| tool | workers | supervisor | all workers | per worker | whole fleet |',
  '| --- | ---: | ---: | ---: | ---: | ---: |'
]
const median = xs => { const s = xs.filter(x => x !== null).sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)] : null }
const groups = new Map()
for (const r of rows) {
  const key = `${r.label}\0${r.count}`
  if (!groups.has(key)) groups.set(key, [])
  groups.get(key).push(r)
}
for (const rs of groups.values()) {
  const m = f => median(rs.map(f))
  const r = {
    label: rs[0].label,
    count: rs[0].count,
    supervisor: rs[0].supervisor === null ? null : { stat: m(x => x.supervisor.stat), sched: m(x => x.supervisor.sched) },
    workers: { n: rs[0].workers.n, stat: m(x => x.workers.stat), sched: m(x => x.workers.sched) },
    // The median of each run's sum, not the sum of the medians.
    fleet: { stat: m(x => (x.supervisor?.stat ?? 0) + x.workers.stat), sched: m(x => (x.supervisor?.sched ?? 0) + x.workers.sched) }
  }
  const n = Math.max(1, r.workers.n)
  md.push(`| ${r.label} | ${r.count} | ${r.supervisor ? `${pct(r.supervisor.stat)} (${pct(r.supervisor.sched)})` : 'n/a'} | ${pct(r.workers.stat)} (${pct(r.workers.sched)}) | ${pct(r.workers.stat / n)} (${pct(r.workers.sched / n)}) | ${pct(r.fleet.stat)} (${pct(r.fleet.sched)}) |`)
}
fs.mkdirSync(values.out, { recursive: true })
fs.writeFileSync(path.join(values.out, 'idle.json'), JSON.stringify({ date: new Date().toISOString(), seconds, versions: peerVersions(), rows }, null, 2) + '\n')
fs.writeFileSync(path.join(values.out, 'idle.md'), md.join('\n') + '\n')
log(`idle: wrote ${path.relative(process.cwd(), values.out)}/idle.{json,md}`)
