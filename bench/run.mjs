// npm run bench: fastify-reuseport against a single process, cluster
// (round-robin and SCHED_NONE), Node 22's and Node 24's own reusePort, PM2
// cluster mode and Platformatic Watt (bench/peers.mjs: --modes ...,pm2,watt;
// installed into bench/.work/ on first use), on the same app with
// the same client (wrk -t1 -c64), runs interleaved mode by mode on one machine.
// Writes bench/results/results.{json,md,svg}.
//
//   node bench/run.mjs [--seconds 5] [--reps 3] [--restart-reps 3] [--modes a,b] [--apps hello,cpu] [--out dir] [--smoke]
// fastify-reuseport-before: the build in $BENCH_BEFORE (a checkout of main), for a before/after in one run.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { execFileSync } from 'node:child_process'
import { ROOT, NODE22, NODE24, cpuSeconds, failed, freePort, hasNode22, hasNode24, hasWrk, launch, rssMb, sleep, wrk } from './lib.mjs'
import { peerVersions } from './peers.mjs'
import { renderMarkdown, renderSvg } from './report.mjs'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    reps: { type: 'string', default: '3' },
    'restart-reps': { type: 'string' },
    modes: { type: 'string' },
    apps: { type: 'string', default: 'hello,cpu' },
    out: { type: 'string', default: path.join(ROOT, 'bench', 'results') },
    smoke: { type: 'boolean', default: false }
  }
})
if (!hasWrk()) {
  console.error('bench: wrk is not installed (Debian package wrk: apt-get install wrk)')
  process.exit(1)
}
const smoke = values.smoke
const seconds = smoke ? 1 : Number(values.seconds)
const reps = smoke ? 1 : Number(values.reps)
const workers = 2
const apps = { hello: '/', cpu: '/cpu' }
const appNames = (smoke ? 'hello' : values.apps).split(',')
let modes = values.modes?.split(',') ?? ['single', 'cluster-rr', 'cluster-none', 'node22-reuseport', 'fastify-reuseport', 'fastify-reuseport-cluster', 'fastify-reuseport-node22', 'node24-reuseport', 'fastify-reuseport-node24']
if (smoke && !values.modes) modes = ['single', 'cluster-rr', 'fastify-reuseport']
if (!hasNode22()) {
  console.error('bench: no Node 22 in .node22/ (npm test installs it): skipping the Node 22 modes')
  modes = modes.filter(m => !m.includes('node22'))
}
if (!hasNode24()) {
  console.error('bench: no Node 24 in .node24/ (npm test installs it): skipping the Node 24 modes')
  modes = modes.filter(m => !m.includes('node24'))
}

const log = msg => process.stderr.write(msg + '\n')
const runs = []

async function measure (mode, app, close, rep) {
  const port = await freePort()
  const server = await launch(mode, { port, workers })
  try {
    const url = `http://127.0.0.1:${port}${apps[app]}`
    await wrk({ url, seconds: 1, close }) // warm-up: JIT, connection setup
    const sup = server.supervisorPid
    const cpuBefore = sup ? cpuSeconds(sup) : 0
    const r = await wrk({ url, seconds, close })
    const supCpu = sup ? (cpuSeconds(sup) - cpuBefore) / seconds : null
    const pids = server.workerPids()
    const run = {
      mode,
      app,
      conn: close ? 'new' : 'keepalive',
      rep,
      ...r,
      failed: failed(r),
      readyMs: server.readyMs,
      supervisorRssMb: sup ? rssMb(sup) : null,
      workerRssMb: pids.map(rssMb),
      supervisorCpu: supCpu
    }
    log(`${mode.padEnd(26)} ${app.padEnd(5)} ${run.conn.padEnd(9)} ${r.rps.toFixed(0).padStart(7)} req/s  p99 ${r.p99ms.toFixed(2)} ms  failed ${run.failed}`)
    return run
  } finally {
    await server.stop()
  }
}

/**
 * Throughput while workers are restarted, against the same mode at rest:
 * one rolling restart of every worker inside a window, and restarts back to
 * back for the whole window (the worst case: a new worker always booting).
 */
async function restartRun (mode, close) {
  const port = await freePort()
  const server = await launch(mode, { port, workers })
  const done = mode.startsWith('fastify-reuseport') ? /reload: all \d+ slots replaced/ : /reloaded/
  const reload = async () => {
    const before = server.output().length
    const started = Date.now()
    // PM2 and Watt: their own zero-downtime reload (pm2 reload, wattpm restart), done when the command
    // returns: pm2 once every worker was replaced, wattpm once the runtime answered POST /api/v1/restart.
    if (server.reload) await server.reload()
    else {
      server.proc.kill('SIGHUP')
      while (!done.test(server.output().slice(before))) await sleep(10)
    }
    return Date.now() - started
  }
  try {
    const url = `http://127.0.0.1:${port}/`
    await wrk({ url, seconds: 1, close })
    const steady = await wrk({ url, seconds, close })
    const onceRun = wrk({ url, seconds, close })
    await sleep(1000)
    const reloadMs = await reload()
    const once = await onceRun
    let reloading = true
    let reloads = 0
    const loop = (async () => { while (reloading) { await reload(); reloads++ } })()
    const during = await wrk({ url, seconds, close })
    reloading = false
    await loop
    const run = {
      mode,
      conn: close ? 'new' : 'keepalive',
      steadyRps: steady.rps,
      onceRps: once.rps,
      onceRatio: once.rps / steady.rps,
      reloadMs,
      backToBackRps: during.rps,
      backToBackRatio: during.rps / steady.rps,
      reloads,
      // Apart: one reload's cost, and the back-to-back window's (a reload always in progress).
      onceFailed: failed(once),
      backToBackFailed: failed(during),
      failed: failed(once) + failed(during)
    }
    log(`restart ${mode.padEnd(18)} ${run.conn.padEnd(9)} one restart (${reloadMs} ms) in ${seconds} s: ${(run.onceRatio * 100).toFixed(1)}%; back to back: ${(run.backToBackRatio * 100).toFixed(1)}%, ${reloads} reloads; failed ${run.failed}`)
    return run
  } finally {
    await server.stop()
  }
}

for (let rep = 1; rep <= reps; rep++) {
  for (const app of appNames) {
    for (const close of [false, true]) {
      // Interleave: a different mode goes first in every repetition.
      const order = modes.map((_, i) => modes[(i + rep - 1) % modes.length])
      for (const mode of order) runs.push(await measure(mode, app, close, rep))
    }
  }
}

const restarts = []
const restartReps = values['restart-reps'] ? Number(values['restart-reps']) : reps
for (let rep = 1; rep <= restartReps; rep++) {
  for (const mode of ['fastify-reuseport', 'fastify-reuseport-before', 'cluster-rr', 'pm2', 'watt'].filter(m => modes.includes(m))) {
    for (const close of [false, true]) {
      // A peer whose reload command fails is reported, not fatal to the rest of the run.
      try { restarts.push({ rep, ...(await restartRun(mode, close)) }) } catch (err) { log(`restart ${mode}: ${err.message.split('\n')[0]}`) }
    }
  }
}

const versions = {
  node20: process.version,
  node22: hasNode22() ? execFileSync(NODE22, ['-v'], { encoding: 'utf8' }).trim() : null,
  node24: hasNode24() ? execFileSync(NODE24, ['-v'], { encoding: 'utf8' }).trim() : null
}
const wrkVersion = execFileSync('sh', ['-c', 'wrk -v 2>&1 | head -1'], { encoding: 'utf8' }).trim()
const results = {
  peers: peerVersions(),
  date: new Date().toISOString(),
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? 'unknown', kernel: os.release(), memoryGb: Math.round(os.totalmem() / 2 ** 30) },
  versions: { ...versions, wrk: wrkVersion },
  command: `node bench/run.mjs --seconds ${seconds} --reps ${reps}${values['restart-reps'] ? ` --restart-reps ${restartReps}` : ''}${values.modes ? ` --modes ${values.modes}` : ''}`,
  client: `wrk -t1 -c64 -d${seconds}s --latency -s bench/pids.lua [-H 'Connection: close']`,
  workers,
  seconds,
  reps,
  restartReps,
  runs,
  restarts
}
fs.mkdirSync(values.out, { recursive: true })
fs.writeFileSync(path.join(values.out, 'results.json'), JSON.stringify(results, null, 2) + '\n')
fs.writeFileSync(path.join(values.out, 'results.md'), renderMarkdown(results))
fs.writeFileSync(path.join(values.out, 'results.svg'), renderSvg(results))
log(`bench: wrote ${path.relative(process.cwd(), values.out)}/results.{json,md,svg}`)
