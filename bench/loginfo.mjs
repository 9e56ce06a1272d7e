// Throughput at -l info, 2 log lines per request (fastify's request and
// response lines): fastify-reuseport against Node's cluster, each with its
// stdout piped to `cat > /dev/null`. wrk -c64 keep-alive, 1 s of warm-up,
// then 5 s; modes interleaved. Prints req/s per run.
//
//   node bench/loginfo.mjs [--reps 3]
import { spawn } from 'node:child_process'
import { parseArgs } from 'node:util'
import { childrenOf, freePort, hasWrk, modeCommand, sleep, wrk } from './lib.mjs'

const { values } = parseArgs({ options: { reps: { type: 'string', default: '3' } } })
if (!hasWrk()) {
  console.error('bench: wrk is not installed (Debian package wrk: apt-get install wrk)')
  process.exit(1)
}

async function run (mode) {
  const port = await freePort()
  const { argv, env } = modeCommand(mode, { port, workers: 2, args: mode === 'fastify-reuseport' ? ['-l', 'info'] : [] })
  const sink = spawn('sh', ['-c', 'cat > /dev/null'], { stdio: ['pipe', 'ignore', 'inherit'] })
  // The bench servers read LOG_LEVEL; the CLI takes -l.
  const server = spawn(argv[0], argv.slice(1), { env: { ...env, LOG_LEVEL: 'info' }, stdio: ['ignore', sink.stdin, 'inherit'] })
  try {
    const url = `http://127.0.0.1:${port}/`
    for (let i = 0; i < 300; i++) {
      try { await fetch(url); break } catch { await sleep(100) }
    }
    await wrk({ url, seconds: 1 })
    return Math.round((await wrk({ url, seconds: 5 })).rps)
  } finally {
    for (const pid of childrenOf(server.pid)) try { process.kill(pid, 'SIGKILL') } catch {}
    server.kill('SIGKILL')
    sink.kill()
    await sleep(300)
  }
}

const results = { 'fastify-reuseport': [], 'cluster-rr': [] }
for (let i = 0; i < Number(values.reps); i++) {
  for (const mode of Object.keys(results)) results[mode].push(await run(mode))
}
for (const [mode, rps] of Object.entries(results)) console.log(`${mode.padEnd(18)} -l info: ${rps.join(', ')} req/s`)
