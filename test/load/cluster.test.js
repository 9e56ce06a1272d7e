'use strict'

// The cluster balancer: where SO_REUSEPORT cannot balance (macOS, Windows,
// Linux without the addon), `start` runs on Node's cluster round-robin with
// the same flags, signals, drain and respawn. Forced here with --balancer.
const t = require('tap')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { request } = require('undici')
const { ROOT, FIXTURES, alive, freePort, load, processesWith, sleep, startCli, waitFor } = require('../helpers')

const app = path.join(FIXTURES, 'app.js')
const matching = (sup, re) => sup.lines.filter(l => typeof l.msg === 'string' && re.test(l.msg))

async function startApp (t, args, opts = {}) {
  const port = await freePort()
  const marker = `reuseport-test-${crypto.randomUUID()}`
  const sup = await startCli(['-a', '127.0.0.1', '-p', String(port), ...args, app], { env: { REUSEPORT_TEST_MARKER: marker }, ...opts })
  t.teardown(async () => {
    await sup.stop('SIGKILL')
    for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
  })
  return { sup, port, url: `http://127.0.0.1:${port}`, marker }
}

t.test('--balancer cluster: two workers, a rolling restart under load, a crash, metrics, SIGTERM with a request in flight', async t => {
  const metricsPort = await freePort()
  const { sup, url } = await startApp(t, ['--balancer', 'cluster', '-w', '2', '--metrics-port', String(metricsPort)])
  t.equal(matching(sup, /^safety nets: balancer cluster round-robin \(forced by --balancer cluster\)/).length, 1, 'one start line says so')
  const workers = sup.workerPids()
  t.equal(workers.length, 2)
  const r = await load({ url, durationMs: 1000, connections: 4, keepAlive: false })
  t.same(Object.keys(r.pids).map(Number).sort(), [...workers].sort(), `round-robin across both workers: ${JSON.stringify(r.pids)}`)

  const loads = Promise.all([
    load({ url, durationMs: 5000, connections: 4, keepAlive: true }),
    load({ url, durationMs: 5000, connections: 4, keepAlive: false })
  ])
  await sleep(1000)
  sup.child.kill('SIGHUP')
  await waitFor(() => matching(sup, /^reload: all 2 slots replaced$/).length === 1, { timeout: 15000, what: 'the reload' })
  const [keepAlive, fresh] = await loads
  t.ok(keepAlive.requests > 200 && fresh.requests > 100, `real load: ${keepAlive.requests} + ${fresh.requests}`)
  t.equal(keepAlive.failed + fresh.failed, 0, `0 failed across the reload: ${JSON.stringify([keepAlive.errors, fresh.errors])}`)
  t.notOk(workers.some(alive), 'the old workers are gone')

  const [victim] = sup.workerPids()
  process.kill(victim, 'SIGKILL')
  await waitFor(() => matching(sup, /: worker \d+ ready$/).length === 1, { timeout: 10000, what: 'the respawn' })
  t.equal(sup.workerPids().length, 2, 'respawned')
  const metrics = await (await request(`http://127.0.0.1:${metricsPort}/metrics`)).body.text()
  t.match(metrics, /fastify_reuseport_slot_restarts_total\{slot="\d"\} [12]/, 'metrics per slot')
  t.match(metrics, 'fastify_reuseport_slot_last_exit_info{slot=', 'the crash is in the metrics')

  const slow = request(`${url}/slow?ms=1500`).then(async res => ({ status: res.statusCode, body: await res.body.json() }))
  await sleep(300)
  const { code } = await sup.stop('SIGTERM')
  const answered = await slow
  t.equal(answered.status, 200, 'the request in flight was answered')
  t.equal(answered.body.slow, true)
  t.equal(code, 0, 'a clean exit')
})

t.test('without the addon, start falls back to cluster and says why; --balancer reuseport there fails with one line', async t => {
  // A copy of the package without build/ or prebuilds/: node-gyp-build finds no addon.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-nobuild-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.cpSync(path.join(ROOT, 'dist'), path.join(dir, 'dist'), { recursive: true })
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'))
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'))
  const cli = path.join(dir, 'dist', 'lib', 'cli.js')

  const port = await freePort()
  const forced = spawnSync(process.execPath, [cli, 'start', '--balancer', 'reuseport', '-a', '127.0.0.1', '-p', String(port), app], { encoding: 'utf8', timeout: 20000 })
  t.equal(forced.status, 1)
  t.equal(forced.stdout, '', 'nothing on stdout')
  t.match(forced.stderr, /^fastify-reuseport: FST_REUSEPORT_UNSUPPORTED: Cannot run supervised workers: the native addon could not be loaded.*; to fix, .*\n$/)

  const copy = await startCopy(t, cli)
  t.match(matching(copy, /^safety nets: balancer cluster round-robin/)[0].msg, /\(the native addon could not be loaded: no prebuilt binary for linux-\w+ \((glibc|musl)\); to fix, build it from source: `npx fastify-reuseport build`/, 'the start line says why, and the one command that fixes it')
  const r = await load({ url: copy.url, durationMs: 800, connections: 2, keepAlive: false })
  t.equal(r.failed, 0, 'it serves')
  t.equal(Object.keys(r.pids).length, 2, 'on both workers')
})

async function startCopy (t, cli) {
  const port = await freePort()
  const marker = `reuseport-test-${crypto.randomUUID()}`
  const { spawn } = require('node:child_process')
  const child = spawn(process.execPath, [cli, 'start', '-w', '2', '-a', '127.0.0.1', '-p', String(port), app], { env: { ...process.env, REUSEPORT_TEST_MARKER: marker }, stdio: ['ignore', 'pipe', 'pipe'] })
  const lines = []
  let buf = ''
  child.stdout.on('data', d => {
    buf += d
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      try { lines.push(JSON.parse(buf.slice(0, i))) } catch {}
      buf = buf.slice(i + 1)
    }
  })
  t.teardown(() => {
    child.kill('SIGKILL')
    for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
  })
  await waitFor(() => lines.some(l => /^safety nets/.test(l.msg)), { timeout: 20000, what: 'the copy to start' })
  return { lines, url: `http://127.0.0.1:${port}` }
}
