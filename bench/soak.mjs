// A soak run: fastify-reuseport under wrk load (keep-alive and new-connection
// clients at once) while rolling reloads (SIGHUP), kill -9s of workers and
// scale changes (SIGTTIN, SIGTTOU) follow each other for the whole run. The
// supervisor's fd count and RSS are sampled every 250 ms, and its heap after a
// full GC every 5 s (/metrics, under node --expose-gc: lib/memory.ts); failed requests are
// counted against the connections the killed workers held when killed (those
// may fail: the kernel resets a dead process's connections; nothing else may).
//
//   node bench/soak.mjs [--seconds 300] [--workers 2] [--out dir] [--smoke] [--natural-gc] [--actions reload,kill,scaleUp,kill,scaleDown]
//   node bench/soak.mjs --from bench/results/soak.json   (soak.md again, next to it)
//
// --smoke: 20 s, for test/load/soak.test.js. Writes soak.json (summary and
// timeline) and soak.md to --out (default bench/results).
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { ROOT, childrenOf, failed, freePort, hasWrk, launch, rssMb, sleep, wrk } from './lib.mjs'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '300' },
    workers: { type: 'string', default: '2' },
    out: { type: 'string', default: path.join(ROOT, 'bench', 'results') },
    smoke: { type: 'boolean', default: false },
    // The supervisor without --expose-gc: V8 collects when it decides, as in
    // production, and the heap samples are the heap in use then, not after a GC.
    'natural-gc': { type: 'boolean', default: false },
    // A subset of the cycle, to find which action a failure comes with.
    actions: { type: 'string', default: 'reload,kill,scaleUp,kill,scaleDown' },
    // Only render soak.md again from this soak.json.
    from: { type: 'string' }
  }
})
const median = xs => xs.length === 0 ? 0 : [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

function markdown (s) {
  const command = `node bench/soak.mjs${s.seconds === 20 ? ' --smoke' : ` --seconds ${s.seconds}`}${s.naturalGc ? ' --natural-gc' : ''}`
  const sup = s.supervisor
  return [
    `Soak run ${s.date.slice(0, 10)}: ${s.workers} workers, ${s.seconds} s of wrk -t1 -c16 keep-alive and -c16 \`Connection: close\` at once, while reloads, kill -9s and scale changes follow each other. Command: \`${command}\`.`,
    '',
    `| requests | failed (timeouts) | killed workers held | reloads | kill -9 | kill to ready, ms median / max | scale up / down | supervisor fds before / after / peak | supervisor RSS MB before / after / peak | supervisor heap ${s.naturalGc ? 'in use' : 'after GC'} KB before / after / peak | p99 ms keep-alive / new |`,
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    `| ${s.requests} | ${s.failed.total} (${s.errors.keepAlive.timeout + s.errors.fresh.timeout}) | ${s.killedConnections} | ${s.actions.reload} | ${s.actions.kill} | ${median(s.respawnMs)} / ${Math.max(0, ...s.respawnMs)} | ${s.actions.scaleUp} / ${s.actions.scaleDown} | ${sup.fdsBefore} / ${sup.fdsAfter} / ${sup.fdsPeak} | ${sup.rssMbBefore} / ${sup.rssMbAfter} / ${sup.rssMbPeak} | ${sup.heapKbBefore ?? '-'} / ${sup.heapKbAfter ?? '-'} / ${sup.heapKbPeak ?? '-'} | ${Math.round(s.p99ms.keepAlive)} / ${Math.round(s.p99ms.fresh)} |`
  ].join('\n') + '\n'
}

if (values.from) {
  fs.writeFileSync(path.join(path.dirname(values.from), 'soak.md'), markdown(JSON.parse(fs.readFileSync(values.from, 'utf8'))))
  process.exit(0)
}
if (!hasWrk()) {
  console.error('soak: wrk is not installed (Debian package wrk: apt-get install wrk)')
  process.exit(1)
}
const seconds = values.smoke ? 20 : Number(values.seconds)
const workers = Number(values.workers)
const log = msg => process.stderr.write(msg + '\n')

const fdsOf = pid => { try { return fs.readdirSync(`/proc/${pid}/fd`).length } catch { return 0 } }

/** Established connections the process holds on the server port (ss -tnp). */
function connectionsOf (port, pid) {
  const out = execFileSync('ss', ['-Htnp', 'state', 'established', `sport = :${port}`], { encoding: 'utf8' })
  return out.split('\n').filter(l => l.includes(`pid=${pid},`)).length
}

async function waitOutput (server, re, from, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs
  while (!re.test(server.output().slice(from))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}`)
    await sleep(20)
  }
}

async function metricPids (metricsPort) {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`)
  const text = await res.text()
  return [...text.matchAll(/^fastify_reuseport_slot_pid\{slot="(\d+)"\} (\d+)$/gm)].map(m => Number(m[2]))
}

const port = await freePort()
const metricsPort = await freePort()
const server = await launch('fastify-reuseport', { port, workers, nodeFlags: values['natural-gc'] ? [] : ['--expose-gc'], args: ['--metrics-port', String(metricsPort)] })
const sup = server.supervisorPid
const counts = { reload: 0, kill: 0, scaleUp: 0, scaleDown: 0 }
let killedConnections = 0
const respawnMs = []
let slots = workers

const actions = {
  async reload () {
    const from = server.output().length
    server.proc.kill('SIGHUP')
    await waitOutput(server, /reload: all \d+ slots replaced/, from)
    counts.reload++
  },
  async kill () {
    const pids = server.workerPids()
    const victim = pids[Math.floor(Math.random() * pids.length)]
    // Stopped first, so that it accepts nothing between the count and the kill:
    // a new-connection client opens thousands of connections a second.
    process.kill(victim, 'SIGSTOP')
    killedConnections += connectionsOf(port, victim)
    const from = server.output().length
    const killedAt = Date.now()
    process.kill(victim, 'SIGKILL')
    counts.kill++
    // Connections queued on its slot wait this long: until the replacement is ready.
    await waitOutput(server, /slot \d+ of \d+: worker \d+ ready/, from)
    respawnMs.push(Date.now() - killedAt)
  },
  async scaleUp () {
    const from = server.output().length
    server.proc.kill('SIGTTIN')
    slots++
    await waitOutput(server, new RegExp(`scale: slot ${slots} of ${slots} added`), from)
    counts.scaleUp++
  },
  async scaleDown () {
    const from = server.output().length
    server.proc.kill('SIGTTOU')
    slots--
    await waitOutput(server, new RegExp(`scale: slot ${slots + 1} retired, ${slots} left`), from)
    counts.scaleDown++
  }
}
// Ends where it started: as many slots as at the start.
const cycle = values.actions.split(',')
if (!cycle.every(a => a in actions) || cycle.filter(a => a === 'scaleUp').length !== cycle.filter(a => a === 'scaleDown').length) {
  console.error(`soak: --actions must list ${Object.keys(actions).join(', ')}, with as many scaleUp as scaleDown`)
  process.exit(2)
}

const timeline = []
const sample = phase => {
  const s = { t: Date.now(), phase, fds: fdsOf(sup), rssMb: +rssMb(sup).toFixed(1), workers: childrenOf(sup).length }
  timeline.push(s)
  return s
}
let phase = 'idle'
const sampler = setInterval(() => sample(phase), 250)
/** The supervisor's heap after a full GC and V8's committed heap, KB; each read forces that GC, so not every 250 ms. */
async function heapKb () {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
  const used = /^fastify_reuseport_supervisor_heap_used_bytes\{after_gc="[01]"\} (\d+)$/m.exec(text)
  const total = /^fastify_reuseport_supervisor_heap_total_bytes (\d+)$/m.exec(text)
  return used === null ? null : { heapKb: Math.round(Number(used[1]) / 1024), heapTotalKb: total === null ? null : Math.round(Number(total[1]) / 1024) }
}
const heap = []
const heapSample = async phase => {
  const s = { t: Date.now(), phase, ...(await heapKb().catch(() => null) ?? { heapKb: null }), rssMb: +rssMb(sup).toFixed(1) }
  if (s.heapKb !== null) heap.push(s)
  return s
}
const heapSampler = setInterval(() => { void heapSample(phase) }, 5000)

let summary
try {
  await sleep(1000)
  const before = sample('baseline')
  const heapBefore = await heapSample('baseline')
  const started = Date.now()
  const url = `http://127.0.0.1:${port}/`
  const clients = Promise.all([
    wrk({ url, seconds, connections: 16 }),
    wrk({ url, seconds, connections: 16, close: true })
  ])
  phase = 'warmup'
  await sleep(Math.min(3000, seconds * 150))
  phase = 'actions'
  const stopAt = started + seconds * 1000 - 2000
  let i = 0
  // A cycle is never cut short: it must end with the slot count it started with.
  while (Date.now() < stopAt || i % cycle.length !== 0) {
    const name = cycle[i++ % cycle.length]
    await actions[name]()
    await sleep(700)
  }
  phase = 'load'
  const [keepAlive, fresh] = await clients
  phase = 'settle'
  await sleep(3000)
  const after = sample('end')
  const heapAfter = await heapSample('end')
  const children = childrenOf(sup)
  const reported = await metricPids(metricsPort)
  const peak = timeline.reduce((m, s) => ({ fds: Math.max(m.fds, s.fds), rssMb: Math.max(m.rssMb, s.rssMb) }), { fds: 0, rssMb: 0 })
  summary = {
    date: new Date().toISOString(),
    seconds,
    workers,
    naturalGc: values['natural-gc'],
    actions: counts,
    requests: keepAlive.requests + fresh.requests,
    failed: { keepAlive: failed(keepAlive), fresh: failed(fresh), total: failed(keepAlive) + failed(fresh) },
    errors: { keepAlive: { non2xx: keepAlive.non2xx, ...keepAlive.errors }, fresh: { non2xx: fresh.non2xx, ...fresh.errors } },
    killedConnections,
    respawnMs,
    supervisor: { fdsBefore: before.fds, fdsAfter: after.fds, fdsPeak: peak.fds, rssMbBefore: before.rssMb, rssMbAfter: after.rssMb, rssMbPeak: peak.rssMb, heapKbBefore: heapBefore.heapKb, heapKbAfter: heapAfter.heapKb, heapKbPeak: Math.max(0, ...heap.map(h => h.heapKb)) },
    workersAfter: children.length,
    unmanaged: children.filter(pid => !reported.includes(pid)),
    rps: { keepAlive: keepAlive.rps, fresh: fresh.rps },
    p99ms: { keepAlive: keepAlive.p99ms, fresh: fresh.p99ms },
    maxms: { keepAlive: keepAlive.maxms, fresh: fresh.maxms }
  }
} finally {
  clearInterval(sampler)
  clearInterval(heapSampler)
  await server.stop()
}

const s = summary
log(`soak: ${s.seconds} s, ${s.requests} requests, ${s.failed.total} failed (killed workers held ${s.killedConnections}); ` +
  `${s.actions.reload} reloads, ${s.actions.kill} kill -9s, ${s.actions.scaleUp} + ${s.actions.scaleDown} scale changes; ` +
  `supervisor fds ${s.supervisor.fdsBefore} -> ${s.supervisor.fdsAfter} (peak ${s.supervisor.fdsPeak}), RSS ${s.supervisor.rssMbBefore} -> ${s.supervisor.rssMbAfter} MB (peak ${s.supervisor.rssMbPeak}), ` +
  `heap after GC ${s.supervisor.heapKbBefore} -> ${s.supervisor.heapKbAfter} KB (peak ${s.supervisor.heapKbPeak})`)
fs.mkdirSync(values.out, { recursive: true })
fs.writeFileSync(path.join(values.out, 'soak.json'), JSON.stringify({ ...s, timeline, heap }, null, 2) + '\n')
fs.writeFileSync(path.join(values.out, 'soak.md'), markdown(s))
log(`soak: wrote ${path.relative(process.cwd(), values.out)}/soak.{json,md}`)
