// The crash scenario (issue 17.3): requests failed by an uncaught exception
// thrown from a timer in one worker, under keep-alive load and under
// new-connection load (wrk), for one crash and for three in a row, per mode.
// Each crash is a GET /crash on a connection of its own (bench/servers/app.js).
//
//   node bench/crash.mjs [--seconds 4] [--modes a,b] [--out dir] [--smoke]
//
// Modes are lib.mjs's modes (cluster-rr is Node's cluster, replacing a dead
// worker as PM2 would), plus fastify-reuseport-grace0 (--crash-grace 0:
// Node's print-and-exit, as before), pm2 (cluster mode: the worker process
// dies, the daemon forks another) and watt (the worker thread dies, the
// runtime starts another): bench/peers.mjs, installed on first use.
// Each row also counts the workers replaced, from the worker pids (Watt: its
// worker threads' ids) sampled every 50 ms: a crash that replaced nothing
// did not crash anything.
// Writes <out>/crash.{json,md} (--smoke: crash-smoke.{json,md}).
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { ROOT, failed, freePort, hasWrk, launch, sleep, wrk } from './lib.mjs'
import { peerVersions, PEERS } from './peers.mjs'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '4' },
    modes: { type: 'string' },
    out: { type: 'string', default: path.join(ROOT, 'bench', 'results') },
    smoke: { type: 'boolean', default: false }
  }
})
if (!hasWrk()) {
  console.error('crash: wrk is not installed (Debian package wrk: apt-get install wrk)')
  process.exit(1)
}
const seconds = values.smoke ? 3 : Number(values.seconds)
const log = msg => process.stderr.write(msg + '\n')
/** name -> [lib.mjs mode, extra CLI args] */
const MODES = {
  'fastify-reuseport': ['fastify-reuseport', []],
  'fastify-reuseport-grace0': ['fastify-reuseport', ['--crash-grace', '0']],
  'cluster-rr': ['cluster-rr', []]
}
const modes = values.modes?.split(',') ?? (values.smoke ? ['fastify-reuseport'] : Object.keys(MODES))
const SCENARIOS = [
  { name: 'keep-alive, 1 crash', close: false, crashes: 1 },
  { name: 'keep-alive, 3 crashes', close: false, crashes: 3 },
  { name: 'new connections, 1 crash', close: true, crashes: 1 },
  { name: 'new connections, 3 crashes', close: true, crashes: 3 }
]

/** One GET /crash on a connection of its own. */
function crash (port) {
  return new Promise(resolve => {
    http.get({ host: '127.0.0.1', port, path: '/crash', agent: false }, res => { res.resume(); res.on('end', () => resolve(res.statusCode)) })
      .on('error', err => resolve(err.code))
  })
}

export async function runScenario (name, scenario) {
  const [mode, args] = MODES[name] ?? [name, []]
  const port = await freePort()
  const server = await launch(mode, { port, workers: 2, args })
  // Every worker id seen while the scenario runs: those beyond the first set were started to replace one.
  const ids = () => server.workerTids?.() ?? server.workerPids()
  const first = ids()
  const seen = new Set(first)
  const sampler = setInterval(() => { for (const id of ids()) seen.add(id) }, 50)
  try {
    const load = wrk({ url: `http://127.0.0.1:${port}/`, seconds, connections: 16, close: scenario.close })
    await sleep(1000)
    const answers = []
    for (let i = 0; i < scenario.crashes; i++) {
      answers.push(await crash(port))
      // The next crash once the last one's replacement had time to start.
      if (i < scenario.crashes - 1) await sleep(800)
    }
    const r = await load
    clearInterval(sampler)
    for (const id of ids()) seen.add(id)
    // Our supervisor logs each crash once, with the error's stack.
    const stacksLogged = (server.output().match(/"stack":"Error: an uncaught exception from a timer/g) ?? []).length
    return { mode: name, scenario: scenario.name, crashes: scenario.crashes, requests: r.requests, failed: failed(r), errors: r.errors, non2xx: r.non2xx, crashAnswers: answers, stacksLogged, workersReplaced: seen.size - first.length }
  } finally {
    clearInterval(sampler)
    await server.stop()
  }
}

const results = []
for (const name of modes) {
  for (const scenario of SCENARIOS) {
    const r = await runScenario(name, scenario)
    log(`crash: ${name}, ${scenario.name}: ${r.failed} failed of ${r.requests}`)
    results.push(r)
  }
}
const lines = [
  `Failed requests on an uncaught exception (wrk -c16, ${seconds} s, 2 workers; crashes 800 ms apart). Each cell: failed of requests, (workers replaced).`,
  '',
  `| scenario | ${modes.join(' | ')} |`,
  `|---|${modes.map(() => '---').join('|')}|`,
  ...SCENARIOS.map(s => {
    const row = modes.map(m => { const r = results.find(x => x.mode === m && x.scenario === s.name); return `${r.failed} of ${r.requests} (${r.workersReplaced})` })
    return `| ${s.name} | ${row.join(' | ')} |`
  })
]
lines.push('', 'failed: non-2xx responses and wrk socket errors (connect, read, write, timeout). wrk counts a write error for every refused reconnect, so with no worker listening at all, failed can exceed the requests completed.')
const peers = modes.filter(m => PEERS.has(m))
if (peers.length > 0) lines.push('', `Peers: ${JSON.stringify(peerVersions())}`)
lines.push('', `Node ${process.version}; \`node bench/crash.mjs ${process.argv.slice(2).join(' ')}\``)
console.log('\n' + lines.join('\n'))
const base = values.smoke ? 'crash-smoke' : 'crash'
fs.mkdirSync(values.out, { recursive: true })
fs.writeFileSync(path.join(values.out, `${base}.json`), JSON.stringify(results, null, 2) + '\n')
fs.writeFileSync(path.join(values.out, `${base}.md`), lines.join('\n') + '\n')
