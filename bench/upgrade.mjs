// A restart of the whole service, as today (SIGTERM, then a new supervisor
// started on the same port: what `systemctl restart` does), against an
// in-place upgrade (SIGUSR2), under the same load: 4 keep-alive and 4
// new-connection undici clients for 6 s, the restart at 2 s. Counts failed
// requests. Prints a markdown table (docs/upgrade.md) and JSON.
//
//   flock /tmp/fr-load.lock node bench/upgrade.mjs [--reps 3]
import { createRequire } from 'node:module'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { ROOT } from './lib.mjs'

const require = createRequire(import.meta.url)
const { FIXTURES, freePort, load, sleep, startCli, waitFor } = require(path.join(ROOT, 'test', 'helpers.js'))

const { values } = parseArgs({ options: { reps: { type: 'string', default: '3' } } })
const reps = Number(values.reps)
const app = path.join(FIXTURES, 'app.js')

async function once (mode) {
  const port = await freePort()
  const args = ['-a', '127.0.0.1', '-p', String(port), '-w', '2', app]
  let sup = await startCli(args)
  const url = `http://127.0.0.1:${port}`
  const loads = Promise.all([
    load({ url, durationMs: 6000, connections: 4, keepAlive: true, timeoutMs: 5000 }),
    load({ url, durationMs: 6000, connections: 4, keepAlive: false, timeoutMs: 5000 })
  ])
  await sleep(2000)
  const at = Date.now()
  if (mode === 'restart') {
    sup.child.kill('SIGTERM')
    await sup.exited
    sup = await startCli(args)
  } else {
    sup.child.kill('SIGUSR2')
    await waitFor(() => sup.lines.some(l => /^upgrade: done/.test(l.msg)), { timeout: 20000, what: 'the upgrade' })
  }
  const took = Date.now() - at
  const [keepAlive, fresh] = await loads
  await sup.stop('SIGTERM')
  return { requests: keepAlive.requests + fresh.requests, keepAliveFailed: keepAlive.failed, newFailed: fresh.failed, errors: { ...keepAlive.errors, ...fresh.errors }, took }
}

const results = {}
for (const mode of ['restart', 'upgrade']) {
  results[mode] = []
  for (let i = 0; i < reps; i++) {
    const r = await once(mode)
    process.stderr.write(`${mode} ${i + 1}: ${JSON.stringify(r)}\n`)
    results[mode].push(r)
  }
}
const row = (label, rs) => `| ${label} | ${rs.map(r => r.keepAliveFailed + r.newFailed).join(', ')} | ${rs.map(r => r.keepAliveFailed).join(', ')} | ${rs.map(r => r.newFailed).join(', ')} | ${rs.map(r => r.requests).join(', ')} | ${rs.map(r => r.took).join(', ')} |`
console.log('| whole-service restart | failed requests | of them keep-alive | of them new-connection | requests sent | restart took, ms |')
console.log('| --- | --- | --- | --- | --- | --- |')
console.log(row('today: SIGTERM, then start', results.restart))
console.log(row('SIGUSR2 (in place)', results.upgrade))
console.log(JSON.stringify(results))
