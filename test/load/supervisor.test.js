'use strict'

// The supervisor with real workers and real load on loopback. These files run
// one at a time (tap --jobs=1 test/load): two cores cannot host two of them.
const t = require('tap')
const crypto = require('node:crypto')
const path = require('node:path')
const { request } = require('undici')
const { FIXTURES, alive, freePort, load, processesWith, sleep, startCli, waitFor } = require('../helpers')

const app = path.join(FIXTURES, 'app.js')

async function startApp (t, args = [], env = {}) {
  const port = await freePort()
  const marker = `reuseport-test-${crypto.randomUUID()}`
  const sup = await startCli(['-a', '127.0.0.1', '-p', String(port), ...args, app], { env: { REUSEPORT_TEST_MARKER: marker, ...env } })
  t.teardown(async () => {
    await sup.stop('SIGKILL')
    for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
  })
  return { sup, port, url: `http://127.0.0.1:${port}`, marker }
}

const linesMatching = (sup, re) => sup.lines.filter(l => typeof l.msg === 'string' && re.test(l.msg))

t.test('two workers serve; the supervisor serves none', async t => {
  const { sup, url } = await startApp(t, ['-w', '2', '-l', 'info'])
  const workers = sup.workerPids()
  t.equal(workers.length, 2, 'two worker processes')
  t.equal(linesMatching(sup, /^slot \d of 2: worker \d+ serving 127\.0\.0\.1:\d+$/).length, 2, 'one start line per slot')
  t.match(linesMatching(sup, /^safety nets/)[0].msg, /socket handoff on; net\.ipv4\.tcp_migrate_req (on|off|unavailable.*); classic BPF steering (attached on demand|unavailable)/)
  const r = await load({ url, durationMs: 1500, connections: 4, keepAlive: false })
  t.equal(r.failed, 0, 'no failed request')
  t.same(Object.keys(r.pids).map(Number).sort(), [...workers].sort(), `every response came from a worker: ${JSON.stringify(r.pids)}`)
  t.notOk(r.pids[sup.child.pid], 'none from the supervisor')
  const env = await (await request(`${url}/env`)).body.json()
  t.same(env, { listeners: null, worker: null }, 'a worker does not pass its slot fds on to processes it spawns')
  const workerLines = sup.lines.filter(l => l.msg === 'request completed')
  t.ok(workerLines.length > 0, 'the workers log at -l info')
  t.ok(workerLines.every(l => workers.includes(l.pid) && (l.slot === 0 || l.slot === 1)), 'every worker line carries its slot and pid')
})

t.test('rolling restarts under load fail no request, keep-alive or new connections', async t => {
  const { sup, url } = await startApp(t, ['-w', '2'])
  const before = sup.workerPids()
  const durationMs = 9000
  const loads = Promise.all([
    load({ url, durationMs, connections: 4, keepAlive: true }),
    load({ url, durationMs, connections: 4, keepAlive: false })
  ])
  const reloads = 3
  for (let i = 1; i <= reloads; i++) {
    await sleep(1200)
    sup.child.kill('SIGHUP')
    await waitFor(() => linesMatching(sup, /^reload: all 2 slots replaced$/).length === i, { timeout: 15000, what: `reload ${i}` })
  }
  const [keepAlive, fresh] = await loads
  t.equal(linesMatching(sup, /^reload: slot [12] of 2: worker \d+ ready, draining \d+$/).length, 2 * reloads, 'progress is logged as slot i of n')
  t.ok(keepAlive.requests > 500 && fresh.requests > 200, `real load: ${keepAlive.requests} keep-alive and ${fresh.requests} new-connection requests`)
  t.same({ failed: keepAlive.failed, errors: keepAlive.errors }, { failed: 0, errors: {} }, 'keep-alive clients: 0 failed')
  t.same({ failed: fresh.failed, errors: fresh.errors }, { failed: 0, errors: {} }, 'new-connection clients: 0 failed')
  // The last reload's old workers may still be finishing their drain.
  const after = await waitFor(() => { const pids = sup.workerPids(); return pids.length === 2 && pids }, { timeout: 12000, what: 'the last drains to finish' })
  t.equal(after.length, 2)
  t.notOk(after.some(pid => before.includes(pid)), 'every worker was replaced')
  for (const pid of before) t.notOk(alive(pid), `old worker ${pid} exited`)
})

t.test('a stuck worker killed: connections queued on its slot are handed to the other worker, then to the replacement', async t => {
  const { sup, port } = await startApp(t, ['-w', '2'])
  const [stuck, healthy] = sup.workerPids()
  process.kill(stuck, 'SIGSTOP')
  // New connections, each with a request; those hashed to the stopped worker's slot queue there.
  const n = 40
  const pending = Array.from({ length: n }, () => request(`http://127.0.0.1:${port}/`, { reset: true, headersTimeout: 30000 })
    .then(async r => ({ status: r.statusCode, pid: JSON.parse(await r.body.text()).pid }), err => ({ error: err.code ?? err.message })))
  const ssQueued = () => new Promise(resolve => {
    const out = require('node:child_process').execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' })
    resolve(out.trim().split('\n').map(l => Number(l.trim().split(/\s+/)[1])))
  })
  const queued = await waitFor(async () => { const q = await ssQueued(); return q.some(v => v > 0) && q }, { what: 'connections queued on the stopped slot' })
  t.ok(queued.some(v => v > 0), `connections wait in the stuck slot's accept queue: Recv-Q ${queued}`)
  process.kill(stuck, 'SIGKILL')
  const results = await Promise.all(pending)
  const failed = results.filter(r => r.status !== 200)
  t.same(failed, [], `all ${n} requests served`)
  const byPid = results.reduce((m, r) => ({ ...m, [r.pid]: (m[r.pid] ?? 0) + 1 }), {})
  const replacement = sup.workerPids().find(p => p !== healthy)
  t.notOk(byPid[stuck], 'none by the stopped worker')
  t.ok(Object.keys(byPid).every(pid => Number(pid) === healthy || Number(pid) === replacement), `served by the healthy worker ${healthy} (hand-off) or the replacement ${replacement}: ${JSON.stringify(byPid)}`)
  t.ok(byPid[healthy] > 0)
  t.equal(linesMatching(sup, new RegExp(`^slot \\d of 2: worker ${stuck} exited with signal SIGKILL; respawning (in \\d+ ms|now)$`)).length, 1, 'the crash is logged with its signal')
  t.equal(linesMatching(sup, /^slot \d of 2: no worker; its queue is handed to the other workers until one is ready$/).length, 1, 'the hand-off is logged')
})

t.test('SIGTERM finishes an in-flight slow request, then exits 0 leaving nothing behind', async t => {
  const { sup, url, marker } = await startApp(t, ['-w', '2', '-g', '5000'])
  const workers = sup.workerPids()
  const slow = request(`${url}/slow?ms=1500`).then(async r => ({ status: r.statusCode, body: JSON.parse(await r.body.text()) }))
  await sleep(300)
  sup.child.kill('SIGTERM')
  const res = await slow
  t.equal(res.status, 200, 'the in-flight request completed')
  t.ok(res.body.slow)
  const exit = await sup.exited
  t.same(exit, { code: 0, signal: null }, 'exit code 0')
  for (const pid of workers) t.notOk(alive(pid), `worker ${pid} is gone`)
  t.same(processesWith(marker), [], 'no orphan')
})

t.test('--drain-delay keeps serving after SIGTERM; a second signal forces exit 1', async t => {
  const { sup, url, marker } = await startApp(t, ['-w', '2', '--drain-delay', '1500', '-g', '20000'])
  const slow = request(`${url}/slow?ms=10000`).then(r => r.statusCode, err => err.code)
  await sleep(200)
  sup.child.kill('SIGTERM')
  await sleep(300)
  const during = await request(url).then(r => r.statusCode)
  t.equal(during, 200, 'still serving during the drain delay')
  await sleep(1500)
  sup.child.kill('SIGINT')
  const exit = await sup.exited
  t.equal(exit.code, 1, 'second signal: exit 1')
  t.match(sup.stderr, /second SIGINT, exiting/)
  t.not(await slow, 200, 'the slow request was cut')
  await sleep(200)
  t.same(processesWith(marker), [], 'no orphan')
})

t.test('a SIGKILLed supervisor leaves no orphan: workers drain and exit', async t => {
  const { sup, marker } = await startApp(t, ['-w', '2'])
  const workers = sup.workerPids()
  sup.child.kill('SIGKILL')
  await sup.exited
  await waitFor(() => workers.every(pid => !alive(pid)), { timeout: 15000, what: 'workers to exit' })
  t.same(processesWith(marker), [], 'no orphan')
})

t.test('scaling up and down under load fails no request', async t => {
  const { sup, url } = await startApp(t, ['-w', '2', '--handshake-grace', '500'])
  const durationMs = 7000
  const loads = Promise.all([
    load({ url, durationMs, connections: 4, keepAlive: true }),
    load({ url, durationMs, connections: 4, keepAlive: false })
  ])
  await sleep(1000)
  sup.child.kill('SIGTTIN')
  await waitFor(() => linesMatching(sup, /^scale: slot 3 of 3 added, worker \d+$/).length === 1, { what: 'slot 3' })
  t.equal(sup.workerPids().length, 3, 'three workers')
  await sleep(1500)
  sup.child.kill('SIGTTOU')
  await waitFor(() => linesMatching(sup, /^scale: slot 3 retired, 2 left$/).length === 1, { timeout: 15000, what: 'slot 3 to retire' })
  const [keepAlive, fresh] = await loads
  t.same({ failed: keepAlive.failed, errors: keepAlive.errors }, { failed: 0, errors: {} }, `keep-alive: 0 of ${keepAlive.requests} failed`)
  t.same({ failed: fresh.failed, errors: fresh.errors }, { failed: 0, errors: {} }, `new connections: 0 of ${fresh.requests} failed`)
  t.equal(Object.keys(fresh.pids).length, 3, `the third worker served too: ${JSON.stringify(fresh.pids)}`)
  await waitFor(() => sup.workerPids().length === 2, { what: 'the retired worker to exit' })
  sup.child.kill('SIGTTOU')
  await waitFor(() => linesMatching(sup, /^scale: slot 2 retired, 1 left$/).length === 1, { timeout: 15000, what: 'slot 2 to retire' })
  sup.child.kill('SIGTTOU')
  await waitFor(() => /SIGTTOU ignored: the last slot is never retired/.test(sup.stderr), { timeout: 15000, what: 'the last slot to be kept' })
  t.equal(sup.workerPids().length, 1, 'one slot left, never zero')
})

t.test('a reload whose new worker fails keeps the old workers serving', async t => {
  const fs = require('node:fs')
  const os = require('node:os')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-reload-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'app.js')
  fs.copyFileSync(app, file)
  const port = await freePort()
  const sup = await startCli(['-w', '2', '-a', '127.0.0.1', '-p', String(port), file])
  t.teardown(() => sup.stop('SIGKILL'))
  const before = sup.workerPids()
  const url = `http://127.0.0.1:${port}`
  const loads = load({ url, durationMs: 3000, connections: 4, keepAlive: false })
  await sleep(500)
  fs.writeFileSync(file, "'use strict'\nthrow new Error('broken deploy')\n")
  sup.child.kill('SIGHUP')
  await waitFor(() => linesMatching(sup, /^reload: slot 1 of 2: .*broken deploy.*; keeping worker \d+, reload stopped$/).length === 1, { what: 'the failed reload to be logged' })
  const r = await loads
  t.equal(r.failed, 0, `no failed request (${r.requests})`)
  t.same(sup.workerPids().sort(), before.sort(), 'the old workers still serve')
  t.same(Object.keys(r.pids).map(Number).sort(), before.sort())
})

t.test('past the close grace delay a draining worker closes what is left and exits', async t => {
  const { sup, url, marker } = await startApp(t, ['-w', '2', '-g', '1000'])
  const slow = request(`${url}/slow?ms=20000`).then(r => r.statusCode, err => err.code)
  await sleep(300)
  const started = Date.now()
  sup.child.kill('SIGTERM')
  const exit = await sup.exited
  const took = Date.now() - started
  t.same(exit, { code: 0, signal: null }, 'exit code 0')
  t.ok(took < 5000, `shutdown took ${took} ms, bounded by -g 1000, not by the 20 s request`)
  t.not(await slow, 200, 'the request past the grace delay was cut')
  await sleep(200)
  t.same(processesWith(marker), [], 'no orphan')
})

t.test('-r and -i preload modules in every worker', async t => {
  const { sup, url } = await startApp(t, ['-w', '2', '-r', path.join(FIXTURES, 'preload.js'), '-i', path.join(FIXTURES, 'preload.mjs')])
  const seen = new Set()
  for (let i = 0; i < 20; i++) {
    const res = await request(`${url}/preloaded`, { reset: true })
    seen.add(JSON.stringify((await res.body.json()).preloaded))
  }
  t.same([...seen], ['["cjs","esm"]'], 'every worker ran both preloads, CommonJS first')
  t.equal(sup.workerPids().length, 2)
})
