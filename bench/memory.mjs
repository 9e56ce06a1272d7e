// The supervisor's memory against the number of workers it has started
// (issue 23): N cycles of one kind of worker lifecycle, under a light load
// of new connections, with the supervisor's RSS (/proc) and heap after a
// full GC (/metrics under node --expose-gc, lib/supervisor/memory.ts) read after each.
//
//   node bench/memory.mjs --action kill|reload|scale [--cycles 300] [--from-cycle 50] [--workers 2] [--node-flag=--jitless] [--out dir]
//
// kill: kill -9 of a worker, until its replacement is ready (1 lifecycle).
// reload: SIGHUP, until every slot has a new worker (one per slot).
// scale: SIGTTIN then SIGTTOU (1 lifecycle). The load keeps every worker
// serving, so that a killed one is respawned at once, not after a backoff.
// Writes memory-<action>.json (every sample) and memory-<action>.md to --out
// (default bench/results): growth from --from-cycle to the last cycle.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { ROOT, freePort, hasWrk, launch, rssMb, sleep } from './lib.mjs'

const { values } = parseArgs({
  options: {
    action: { type: 'string', default: 'kill' },
    cycles: { type: 'string', default: '300' },
    'from-cycle': { type: 'string', default: '50' },
    workers: { type: 'string', default: '2' },
    // More node flags for the supervisor (its workers inherit them): --jitless
    // tells V8's code and feedback, which grow as it optimizes, from what we keep.
    'node-flag': { type: 'string', multiple: true, default: [] },
    out: { type: 'string', default: path.join(ROOT, 'bench', 'results') }
  }
})
const action = values.action
const cycles = Number(values.cycles)
const fromCycle = Math.min(Number(values['from-cycle']), cycles)
const workers = Number(values.workers)
if (!['kill', 'reload', 'scale'].includes(action)) {
  console.error('memory: --action must be kill, reload or scale')
  process.exit(2)
}
if (!hasWrk()) {
  console.error('memory: wrk is not installed (Debian package wrk: apt-get install wrk)')
  process.exit(1)
}
const log = msg => process.stderr.write(msg + '\n')

const port = await freePort()
const metricsPort = await freePort()
const server = await launch('fastify-reuseport', {
  port,
  workers,
  nodeFlags: ['--expose-gc', ...values['node-flag']],
  args: ['--metrics-port', String(metricsPort), '--handshake-grace', '200']
})
const sup = server.supervisorPid

async function waitOutput (re, from, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs
  while (!re.test(server.output().slice(from))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}`)
    await sleep(10)
  }
}

/** The supervisor's heap after a full GC and V8's committed heap, KB (lib/supervisor/memory.ts). */
async function heap () {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
  const m = /^fastify_reuseport_supervisor_heap_used_bytes\{after_gc="1"\} (\d+)$/m.exec(text)
  if (m === null) throw new Error('no heap after GC in /metrics: is the supervisor under --expose-gc?')
  const total = Number(/^fastify_reuseport_supervisor_heap_total_bytes (\d+)$/m.exec(text)?.[1] ?? 0)
  return { heapKb: Math.round(Number(m[1]) / 1024), heapTotalKb: Math.round(total / 1024) }
}

/** RSS split as the kernel counts it: anonymous (heaps: malloc's and V8's) and file-backed (node's code, libraries), MB. */
function rssParts (pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = name => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0)
  return { anonMb: +(kb('RssAnon') / 1024).toFixed(2), fileMb: +(kb('RssFile') / 1024).toFixed(2) }
}

const slots = workers
const run = {
  async kill () {
    const pids = server.workerPids()
    const from = server.output().length
    process.kill(pids[Math.floor(Math.random() * pids.length)], 'SIGKILL')
    await waitOutput(/slot \d+ of \d+: worker \d+ ready/, from)
    return 1
  },
  async reload () {
    const from = server.output().length
    server.proc.kill('SIGHUP')
    await waitOutput(/reload: all \d+ slots replaced/, from)
    return slots
  },
  async scale () {
    let from = server.output().length
    server.proc.kill('SIGTTIN')
    await waitOutput(new RegExp(`scale: slot ${slots + 1} of ${slots + 1} added`), from)
    from = server.output().length
    server.proc.kill('SIGTTOU')
    await waitOutput(new RegExp(`scale: slot ${slots + 1} retired, ${slots} left`), from)
    return 1
  }
}

// A light load of new connections (each waits 20 ms between requests): every
// worker accepts within moments of being ready, as in production. Stopped at the end.
const load = spawn('wrk', ['-t1', '-c4', '-d3600s', '-H', 'Connection: close', '-s', path.join(ROOT, 'bench', 'pids.lua'), `http://127.0.0.1:${port}/`],
  { env: { ...process.env, WRK_DELAY_MS: '20' }, stdio: 'ignore' })
const samples = []
const started = Date.now()
try {
  await sleep(1000)
  let lifecycles = 0
  samples.push({ cycle: 0, lifecycles, t: 0, rssMb: +rssMb(sup).toFixed(2), ...rssParts(sup), ...await heap() })
  for (let cycle = 1; cycle <= cycles; cycle++) {
    lifecycles += await run[action]()
    // The load reaches the new worker before the next action.
    await sleep(200)
    const h = await heap()
    samples.push({ cycle, lifecycles, t: Date.now() - started, rssMb: +rssMb(sup).toFixed(2), ...rssParts(sup), ...h })
    if (cycle % 25 === 0) log(`memory: ${action} cycle ${cycle}: RSS ${samples.at(-1).rssMb} MB, heap after GC ${h.heapKb} KB (V8 committed ${h.heapTotalKb} KB)`)
  }
} finally {
  load.kill('SIGKILL')
  await server.stop()
}

const a = samples[fromCycle]
const b = samples[samples.length - 1]
const flags = values['node-flag'].map(f => ` --node-flag=${f}`).join('')
const summary = {
  date: new Date().toISOString(),
  action,
  nodeFlags: values['node-flag'],
  workers,
  cycles,
  fromCycle,
  lifecycles: b.lifecycles - a.lifecycles,
  seconds: Math.round(b.t / 1000),
  rssMb: { start: samples[0].rssMb, from: a.rssMb, end: b.rssMb, growth: +(b.rssMb - a.rssMb).toFixed(2), peak: Math.max(...samples.map(s => s.rssMb)) },
  anonMb: { from: a.anonMb, end: b.anonMb },
  fileMb: { from: a.fileMb, end: b.fileMb },
  heapKb: { start: samples[0].heapKb, from: a.heapKb, end: b.heapKb, growth: b.heapKb - a.heapKb },
  heapTotalKb: { from: a.heapTotalKb, end: b.heapTotalKb }
}
const md = `| ${action} | ${cycles} | ${summary.lifecycles} | ${summary.rssMb.start} / ${a.rssMb} / ${b.rssMb} | ${summary.rssMb.growth >= 0 ? '+' : ''}${summary.rssMb.growth} | ${summary.heapKb.start} / ${a.heapKb} / ${b.heapKb} | ${summary.heapKb.growth >= 0 ? '+' : ''}${summary.heapKb.growth} |\n`
log(`memory: ${action}: cycle ${fromCycle} -> ${cycles} (${summary.lifecycles} worker lifecycles, ${summary.seconds} s): RSS ${a.rssMb} -> ${b.rssMb} MB (anonymous ${a.anonMb} -> ${b.anonMb}, file ${a.fileMb} -> ${b.fileMb}), heap after GC ${a.heapKb} -> ${b.heapKb} KB`)
fs.mkdirSync(values.out, { recursive: true })
fs.writeFileSync(path.join(values.out, `memory-${action}${flags.replace(/ --node-flag=--/g, '-')}.json`), JSON.stringify({ ...summary, samples }, null, 2) + '\n')
fs.writeFileSync(path.join(values.out, `memory-${action}${flags.replace(/ --node-flag=--/g, '-')}.md`),
  `Command: \`node bench/memory.mjs --action ${action} --cycles ${cycles} --from-cycle ${fromCycle}${flags}\`, ${workers} workers, ${summary.date.slice(0, 10)}.\n\n` +
  '| action | cycles | lifecycles from cycle ' + fromCycle + ' | RSS MB start / cycle ' + fromCycle + ' / end | RSS growth MB | heap after GC KB start / cycle ' + fromCycle + ' / end | heap growth KB |\n' +
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n' + md)
