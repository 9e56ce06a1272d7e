// What forwarding whole log lines costs the supervisor (lib/supervisor/logs.ts): a
// writer process writes N JSON lines into its own pipe as fast as it can; this
// process forwards them into a pipe drained by cat(1), either with
// createLineForwarder or with a plain stream.pipe() (a byte copy with no line
// handling: the least any forwarding costs). Reports this process's CPU time
// per MB and per line, and the wall time, median of --reps runs.
//
//   node bench/logs.mjs [--lines 20000] [--reps 5]
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'

const require = createRequire(import.meta.url)
const { createLineForwarder } = require('../dist/lib/supervisor/logs.js')

const { values } = parseArgs({ options: { lines: { type: 'string', default: '20000' }, reps: { type: 'string', default: '5' } } })
const reps = Number(values.reps)

// pino-like lines; sizes: a typical request log line and a big one (a stack, a body).
const WRITER = `
  const fs = require('fs')
  const n = Number(process.argv[1]), size = Number(process.argv[2])
  const line = Buffer.from(JSON.stringify({ level: 30, time: Date.now(), pid: process.pid, msg: 'x'.repeat(size - 60) }).slice(0, size - 1) + '\\n')
  const batch = Buffer.concat(Array.from({ length: 16 }, () => line))
  for (let i = 0; i < n; i += 16) {
    let off = 0
    while (off < batch.length) {
      try { off += fs.writeSync(1, batch, off) } catch (e) { if (e.code !== 'EAGAIN') throw e; Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1) }
    }
  }
`

async function once (mode, lines, size) {
  const sink = spawn('cat', [], { stdio: ['pipe', 'ignore', 'inherit'] })
  const writer = spawn(process.execPath, ['-e', WRITER, String(lines), String(size)], { stdio: ['ignore', 'pipe', 'inherit'] })
  const cpu = process.cpuUsage()
  const start = process.hrtime.bigint()
  const done = new Promise(resolve => writer.once('exit', resolve))
  if (mode === 'pipe') {
    writer.stdout.pipe(sink.stdin, { end: false })
    await new Promise(resolve => writer.stdout.once('end', resolve))
  } else {
    const forwarder = createLineForwarder(sink.stdin)
    forwarder.add(writer.stdout)
    await forwarder.ended()
  }
  await done
  await new Promise(resolve => sink.stdin.end(resolve))
  const used = process.cpuUsage(cpu)
  const wallMs = Number(process.hrtime.bigint() - start) / 1e6
  await new Promise(resolve => sink.once('exit', resolve))
  return { cpuMs: (used.user + used.system) / 1000, wallMs }
}

const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const rows = []
for (const size of [200, 8192]) {
  const lines = size > 1000 ? Math.ceil(Number(values.lines) / 10) : Number(values.lines)
  const mb = lines * size / 1e6
  const result = {}
  for (const mode of ['pipe', 'forwarder']) {
    const runs = []
    for (let i = 0; i < reps; i++) runs.push(await once(mode, lines, size))
    result[mode] = { cpuMs: median(runs.map(r => r.cpuMs)), wallMs: median(runs.map(r => r.wallMs)) }
  }
  const row = {
    size,
    lines,
    mb: +mb.toFixed(1),
    pipeCpuMsPerMb: +(result.pipe.cpuMs / mb).toFixed(2),
    forwarderCpuMsPerMb: +(result.forwarder.cpuMs / mb).toFixed(2),
    forwarderCpuUsPerLine: +(result.forwarder.cpuMs * 1000 / lines).toFixed(2),
    cpuRatio: +(result.forwarder.cpuMs / result.pipe.cpuMs).toFixed(2),
    wallRatio: +(result.forwarder.wallMs / result.pipe.wallMs).toFixed(2)
  }
  rows.push(row)
  console.log(JSON.stringify(row))
}
