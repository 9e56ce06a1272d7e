// A stalled worker: open-loop load (a new connection every 1000/rate ms,
// whether or not earlier requests finished, as independent clients send
// them) while one worker blocks its event loop for 2 s. Compares latency with
// stall-aware steering on and off, Node 22's core reusePort and cluster
// round-robin. Writes bench/results/stall.{json,md}.
//
//   node bench/stall.mjs [--rate 300] [--reps 3] [--block-ms 2000] [--out dir] [--smoke]
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { Agent, request } from 'undici'
import { ROOT, freePort, hasNode22, launch, sleep } from './lib.mjs'

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '300' },
    reps: { type: 'string', default: '3' },
    'block-ms': { type: 'string', default: '2000' },
    out: { type: 'string', default: path.join(ROOT, 'bench', 'results') },
    smoke: { type: 'boolean', default: false }
  }
})
const rate = Number(values.rate)
const reps = values.smoke ? 1 : Number(values.reps)
const blockMs = Number(values['block-ms'])
const seconds = 6
const log = msg => process.stderr.write(msg + '\n')

const modes = [
  ['fastify-reuseport, stall steering on', 'fastify-reuseport', []],
  ['fastify-reuseport, stall steering off', 'fastify-reuseport', ['--stall-timeout', '0']],
  // $BENCH_BEFORE: another build (a checkout of main), for a before/after in one run.
  ...(process.env.BENCH_BEFORE ? [['fastify-reuseport before, stall steering on', 'fastify-reuseport-before', []]] : []),
  ...(hasNode22() ? [['Node 22 core reusePort', 'node22-reuseport', []]] : []),
  ['cluster round-robin', 'cluster-rr', []]
]

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length ? s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))] : NaN
}

async function run (label, mode, args) {
  const port = await freePort()
  const server = await launch(mode, { port, workers: 2, args })
  const agent = new Agent({ connections: null, pipelining: 1 })
  const samples = []
  let errors = 0
  try {
    const url = `http://127.0.0.1:${port}/`
    const pending = []
    const started = Date.now()
    let blockAt = 0
    while (Date.now() - started < seconds * 1000) {
      const t0 = Date.now()
      if (!blockAt && t0 - started > 2000) {
        blockAt = t0
        pending.push(request(`${url}block?ms=${blockMs}`, { dispatcher: agent, reset: true }).then(r => r.body.dump()))
      }
      pending.push(request(url, { dispatcher: agent, reset: true }).then(async r => {
        await r.body.dump()
        samples.push({ start: t0, ms: Date.now() - t0 })
      }, () => { errors++ }))
      await sleep(1000 / rate)
    }
    await Promise.all(pending)
    const during = samples.filter(s => s.start >= blockAt && s.start < blockAt + blockMs).map(s => s.ms)
    const all = samples.map(s => s.ms)
    const row = { label, requests: samples.length + errors, errors, p50: pct(all, 50), p99: pct(all, 99), max: Math.max(...all), duringP99: pct(during, 99), duringSlow: during.filter(ms => ms > 500).length, during: during.length }
    log(`${label.padEnd(40)} p99 ${row.p99} ms, max ${row.max} ms; started during the block: ${row.duringSlow} of ${row.during} took > 500 ms`)
    return row
  } finally {
    await agent.close()
    await server.stop()
  }
}

const rows = []
for (let rep = 0; rep < reps; rep++) {
  for (let i = 0; i < modes.length; i++) {
    const [label, mode, args] = modes[(i + rep) % modes.length]
    rows.push({ rep, ...(await run(label, mode, args)) })
  }
}
const median = xs => pct(xs, 50)
const md = [`Stalled worker: 2 workers, open-loop load of ${rate} new connections/s for ${seconds} s, one worker blocks its event loop for ${blockMs / 1000} s at t = 2 s; median of ${reps} interleaved runs. Command: \`${process.env.BENCH_BEFORE ? 'BENCH_BEFORE=<main checkout> ' : ''}node bench/stall.mjs${values.smoke ? ' --smoke' : ` --reps ${reps}`}${blockMs !== 2000 ? ` --block-ms ${blockMs}` : ''}\`.`, '',
  '| mode | p50 ms | p99 ms | max ms | requests started during the block taking > 500 ms | errors |', '| --- | ---: | ---: | ---: | ---: | ---: |']
for (const [label] of modes) {
  const rs = rows.filter(r => r.label === label)
  md.push(`| ${label} | ${median(rs.map(r => r.p50))} | ${median(rs.map(r => r.p99))} | ${median(rs.map(r => r.max))} | ${median(rs.map(r => r.duringSlow))} of ${median(rs.map(r => r.during))} | ${rs.reduce((a, r) => a + r.errors, 0)} |`)
}
fs.mkdirSync(values.out, { recursive: true })
fs.writeFileSync(path.join(values.out, 'stall.json'), JSON.stringify({ date: new Date().toISOString(), rate, blockMs, seconds, reps, rows }, null, 2) + '\n')
fs.writeFileSync(path.join(values.out, 'stall.md'), md.join('\n') + '\n')
log(`stall: wrote ${path.relative(process.cwd(), values.out)}/stall.{json,md}`)
