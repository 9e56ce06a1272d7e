'use strict'

// Issue 13, one test per fault, through the real CLI: fd pressure (EMFILE) and
// slowloris on the metrics port, a respawn racing a scale-down, the respawn
// backoff, crash loops, logs spliced in a shared pipe, forged readiness, the
// environment and fds an app's child process inherits, HEAD /metrics. Each
// ends the same way: the supervisor is alive and serving, its stdout is whole
// JSON lines, SIGTERM exits 0, and no process is left behind.
const t = require('tap')
const { spawn, execFileSync } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { request } = require('undici')
const { CLI, FIXTURES, childrenOf, freePort, hasCommand, processesWith, sleep, startCli, waitFor } = require('../helpers')

const APP = path.join(FIXTURES, 'faults-app.js')

/** promise, or fallback once ms have passed; the timer is cleared either way. */
function within (promise, ms, fallback) {
  let timer
  return Promise.race([promise, new Promise(resolve => { timer = setTimeout(() => resolve(fallback), ms) })]).finally(() => clearTimeout(timer))
}

// -1 once the process is gone: an fd assertion then fails instead of throwing.
const fdsOf = pid => { try { return fs.readdirSync(`/proc/${pid}/fd`).length } catch { return -1 } }
const linesMatching = (sup, re) => sup.lines.filter(l => typeof l.msg === 'string' && re.test(l.msg))

async function start (t, args, { env = {}, ready = true } = {}) {
  const port = await freePort()
  const metricsPort = await freePort()
  const marker = `reuseport-faults-${crypto.randomUUID()}`
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-faults-'))
  const sup = await startCli(['-a', '127.0.0.1', '-p', String(port), '--metrics-port', String(metricsPort), '-l', 'info', ...args, APP], {
    env: { REUSEPORT_TEST_MARKER: marker, FAULTS_DIR: dir, ...env }, ready
  })
  t.teardown(async () => {
    await sup.stop('SIGKILL')
    for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
    fs.rmSync(dir, { recursive: true, force: true })
  })
  return { sup, port, metricsPort, marker, dir, url: `http://127.0.0.1:${port}`, metrics: `http://127.0.0.1:${metricsPort}/metrics` }
}

async function get (url, opts = {}) {
  const startedAt = Date.now()
  try {
    const res = await request(url, { reset: true, headersTimeout: 15000, bodyTimeout: 15000, ...opts })
    const text = await res.body.text()
    let body = null
    try { body = JSON.parse(text) } catch {}
    return { status: res.statusCode, body, text, ms: Date.now() - startedAt }
  } catch (err) {
    return { status: 0, error: err.code ?? err.message, ms: Date.now() - startedAt }
  }
}

/** Slot pids as /metrics reports them. */
async function metricPids (ctx) {
  const { text = '' } = await get(ctx.metrics)
  return [...text.matchAll(/^fastify_reuseport_slot_pid\{slot="(\d+)"\} (\d+)$/gm)].map(m => Number(m[2]))
}

/** The end of every test: alive, serving, whole JSON lines, exits 0 on SIGTERM, nothing left behind. */
async function healthy (t, ctx, { jsonLines = true } = {}) {
  const { sup, url, marker } = ctx
  t.equal(sup.child.exitCode, null, 'the supervisor is alive')
  const res = await get(url)
  t.equal(res.status, 200, `and serving (${res.error ?? res.status})`)
  if (jsonLines) {
    const bad = sup.lines.filter(l => typeof l.level !== 'number')
    t.same(bad, [], 'its stdout is whole JSON lines')
  }
  const exit = await within(sup.stop('SIGTERM'), 30000, 'still running 30 s after SIGTERM')
  t.same(exit, { code: 0, signal: null }, `SIGTERM exits 0 (${sup.stderr.trim().split('\n').slice(-2).join(' | ')})`)
  const left = await waitFor(() => {
    const found = processesWith(marker)
    return found.length === 0 ? [] : null
  }, { timeout: 5000, what: 'no process left' }).catch(() => processesWith(marker))
  t.same(left, [], 'no process left behind')
}

function holdConnections (port, n, { slowloris = false, reconnect = () => false } = {}) {
  const sockets = new Set()
  const open = () => {
    const s = net.connect(port, '127.0.0.1')
    sockets.add(s)
    let timer = null
    s.on('error', () => {})
    s.on('data', () => {})
    s.once('connect', () => {
      if (!slowloris) return
      s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n')
      timer = setInterval(() => s.write(`X-${crypto.randomBytes(4).toString('hex')}: 1\r\n`), 1000)
    })
    s.once('close', () => {
      clearInterval(timer)
      sockets.delete(s)
      if (reconnect()) setTimeout(open, 50)
    })
  }
  for (let i = 0; i < n; i++) open()
  return { sockets, release: () => { for (const s of sockets) s.destroy() } }
}

t.test('1a. spawn fails with EMFILE: the supervisor survives, keeps serving, respawns once fds are free, and closes', { skip: !hasCommand('prlimit') && 'prlimit (util-linux) is not installed' }, async t => {
  const ctx = await start(t, ['-w', '2'])
  const pid = ctx.sup.child.pid
  const base = fdsOf(pid)
  const hard = /Max open files\s+\d+\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'))[1]
  // The soft limit only, so that it can be raised back without CAP_SYS_RESOURCE.
  execFileSync('prlimit', ['--pid', String(pid), `--nofile=${base + 3}:`])
  const held = holdConnections(ctx.metricsPort, 30)
  t.teardown(held.release)
  await sleep(300)
  const [victim, other] = ctx.sup.workerPids()
  process.kill(victim, 'SIGKILL')
  await sleep(2000)
  t.equal(ctx.sup.child.exitCode, null, 'the supervisor survives a failed spawn')
  // close-with-grace catches an uncaught exception and starts a shutdown: alive is not enough.
  t.same(ctx.sup.stderr.split('\n').filter(l => /Error/.test(l)).slice(0, 1), [], 'no uncaught error')
  t.same(linesMatching(ctx.sup, /^shutdown:/).map(l => l.msg), [], 'and no shutdown')
  const during = await Promise.all(Array.from({ length: 10 }, () => get(ctx.url)))
  t.same(during.map(r => r.status), during.map(() => 200), 'the other slot serves meanwhile')
  t.ok(during.every(r => r.body?.pid === other), 'from the other worker')
  held.release()
  try { execFileSync('prlimit', ['--pid', String(pid), `--nofile=${hard}:`], { stdio: 'ignore' }) } catch { /* it is gone: the assertions say so */ }
  const workers = await waitFor(() => {
    const w = childrenOf(pid)
    return w.length === 2 && !w.includes(victim) && w
  }, { timeout: 20000, what: 'a worker for the slot once fds are free' }).catch(() => childrenOf(pid))
  t.equal(workers.length, 2, `two workers again: ${workers}`)
  // The respawned worker may still be booting: /metrics lists it once it is ready.
  if (workers.length === 2) {
    const reported = await waitFor(async () => { const p = (await metricPids(ctx)).sort(); return p.every(x => x > 0) && p }, { timeout: 10000, what: '/metrics to list both' }).catch(() => metricPids(ctx))
    t.same([...reported].sort(), [...workers].sort(), 'the ones /metrics reports')
  }
  const fds = await waitFor(() => fdsOf(pid) >= 0 && fdsOf(pid) <= base + 2 && fdsOf(pid), { timeout: 10000, what: 'fds back to baseline' }).catch(() => fdsOf(pid))
  t.ok(fds >= 0 && fds <= base + 2, `supervisor fds back to baseline: ${fds} (baseline ${base}; -1: it exited)`)
  await healthy(t, ctx)
})

t.test('1b. slowloris on the metrics port: fds stay bounded, the supervisor keeps supervising, and the connections are closed by the server', async t => {
  const ctx = await start(t, ['-w', '2'])
  const pid = ctx.sup.child.pid
  const base = fdsOf(pid)
  let attacking = true
  const attack = holdConnections(ctx.metricsPort, 200, { slowloris: true, reconnect: () => attacking })
  t.teardown(() => { attacking = false; attack.release() })
  let maxFds = 0
  const sampler = setInterval(() => { try { maxFds = Math.max(maxFds, fdsOf(pid)) } catch {} }, 50)
  t.teardown(() => clearInterval(sampler))
  await sleep(1000)
  const [victim] = ctx.sup.workerPids()
  process.kill(victim, 'SIGKILL')
  const replaced = await waitFor(() => {
    const w = childrenOf(pid)
    return w.length === 2 && !w.includes(victim)
  }, { timeout: 10000, what: 'the killed worker to be replaced' }).catch(() => false)
  t.ok(replaced, 'a worker killed during the attack is replaced')
  const res = await get(ctx.url)
  t.equal(res.status, 200, 'the app serves during the attack')
  await sleep(4000)
  attacking = false
  t.ok(maxFds <= base + 24, `supervisor fds during 200 slowloris clients: at most ${maxFds} (baseline ${base})`)
  // The clients go on sending a header line every second: only the server's deadlines end them.
  const closedAt = Date.now()
  const gone = await waitFor(() => attack.sockets.size === 0, { timeout: 12000, what: 'the server to close every slowloris connection' }).catch(() => false)
  t.ok(gone, `every slowloris connection closed by the server (${attack.sockets.size} left after ${Date.now() - closedAt} ms)`)
  const fds = await waitFor(() => fdsOf(pid) >= 0 && fdsOf(pid) <= base + 2 && fdsOf(pid), { timeout: 5000, what: 'fds back to baseline' }).catch(() => fdsOf(pid))
  t.ok(fds >= 0 && fds <= base + 2, `supervisor fds back to baseline: ${fds} (baseline ${base}; -1: it exited)`)
  clearInterval(sampler)
  await healthy(t, ctx)
})

t.test('2. a worker killed just before its slot is retired: no unmanaged worker, and a reload reaches every worker', async t => {
  const ctx = await start(t, ['-w', '3'])
  const { sup } = ctx
  const third = Number(/worker (\d+) serving/.exec(linesMatching(sup, /^slot 3 of 3: worker \d+ serving/)[0].msg)[1])
  process.kill(third, 'SIGKILL')
  await sleep(250)
  sup.child.kill('SIGTTOU')
  await waitFor(() => linesMatching(sup, /^scale: slot 3 retired, 2 left$/).length === 1, { timeout: 20000, what: 'slot 3 retired' })
  // Longer than the respawn delay plus a worker's boot.
  await sleep(2000)
  t.same(linesMatching(sup, /of 2: worker \d+ ready/).map(l => l.msg), [], 'no worker started for the retired slot')
  const children = childrenOf(sup.child.pid)
  const reported = await metricPids(ctx)
  t.equal(reported.length, 2, '/metrics reports 2 slots')
  t.same([...children].sort(), [...reported].sort(), `every worker process (${children}) is one /metrics reports (${reported})`)
  fs.writeFileSync(path.join(ctx.dir, 'version'), 'v2')
  sup.child.kill('SIGHUP')
  await waitFor(() => linesMatching(sup, /^reload: all 2 slots replaced$/).length === 1, { timeout: 20000, what: 'the reload' })
  const versions = {}
  for (let i = 0; i < 300; i += 10) {
    for (const r of await Promise.all(Array.from({ length: 10 }, () => get(ctx.url)))) {
      const v = r.body?.version ?? `error ${r.error ?? r.status}`
      versions[v] = (versions[v] ?? 0) + 1
    }
  }
  t.same(versions, { v2: 300 }, 'all 300 requests after the reload get the new code')
  await healthy(t, ctx)
})

t.test('3a. connections queued on a killed slot are served within about 1 s, even after repeated kills', async t => {
  const ctx = await start(t, ['-w', '2'])
  const { sup } = ctx
  const rounds = []
  for (let round = 1; round <= 7; round++) {
    const workers = await waitFor(() => {
      const w = childrenOf(sup.child.pid)
      return w.length === 2 && w
    }, { timeout: 20000, what: `two workers before round ${round}` })
    // Both serving: a request answered by each.
    await waitFor(async () => new Set((await Promise.all(Array.from({ length: 8 }, () => get(ctx.url)))).map(r => r.body?.pid)).size === 2,
      { timeout: 10000, what: `both workers serving before round ${round}` })
    // Both slots at once: nothing serves until a replacement is up; every connection queues.
    for (const pid of workers) process.kill(pid, 'SIGKILL')
    const results = await Promise.all(Array.from({ length: 10 }, () => get(ctx.url)))
    rounds.push({ round, ok: results.filter(r => r.status === 200).length, maxMs: Math.max(...results.map(r => r.ms)) })
  }
  t.comment(JSON.stringify(rounds))
  t.ok(rounds.every(r => r.ok === 10), 'every queued request was served')
  // About 1 s: a respawn and a boot; the bound leaves room for a loaded 2-core machine.
  const slow = rounds.filter(r => r.maxMs > 2000)
  t.same(slow, [], `every round served within 2 s (slowest ${Math.max(...rounds.map(r => r.maxMs))} ms)`)
  await healthy(t, ctx)
})

for (const mode of ['crash', 'crash-after']) {
  t.test(`3b. a crash-looping app (${mode === 'crash' ? 'exits at load' : 'exits 300 ms after it listens'}) ends the supervisor non-zero with one line`, async t => {
    const ctx = await start(t, ['-w', '2'], { env: { FASTIFY_CRASH_LOOP_TIMEOUT: '3000' } })
    const { sup } = ctx
    fs.writeFileSync(path.join(ctx.dir, mode), mode === 'crash' ? '1' : '300')
    // An app bug that hits every worker: no slot serves.
    const killedAt = Date.now()
    for (const victim of sup.workerPids()) process.kill(victim, 'SIGKILL')
    const exit = await within(sup.exited, 20000, null)
    t.ok(exit !== null, `the supervisor gave up (${exit === null ? 'still retrying after 20 s' : `after ${Date.now() - killedAt} ms`})`)
    t.ok(exit !== null && exit.code !== 0 && exit.code !== null, `non-zero exit code: ${JSON.stringify(exit)}`)
    const lines = sup.stderr.split('\n').filter(l => l.startsWith('fastify-reuseport:'))
    t.equal(lines.length, 1, `one line: ${JSON.stringify(lines)}`)
    t.match(lines[0] ?? '', /FST_REUSEPORT_[A-Z_]+|\bE[A-Z]{3,}\b/, 'with a code')
    t.same(sup.lines.filter(l => typeof l.level !== 'number'), [], 'stdout is whole JSON lines')
    await sup.stop('SIGKILL')
    const left = await waitFor(() => processesWith(ctx.marker).length === 0, { timeout: 5000, what: 'no process left' }).catch(() => false)
    t.ok(left, `no process left behind (${processesWith(ctx.marker)})`)
  })
}

t.test('4. long log lines from two workers into a slow pipe arrive whole', async t => {
  const port = await freePort()
  const marker = `reuseport-faults-${crypto.randomUUID()}`
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-faults-'))
  const fifo = path.join(dir, 'stdout')
  execFileSync('mkfifo', [fifo])
  const reader = spawn(process.execPath, [path.join(FIXTURES, 'slow-reader.js'), fifo], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, KEEP: '1', SLOW_MS: '2' } })
  let out = ''
  reader.stdout.on('data', d => { out += d })
  const summary = new Promise(resolve => reader.once('exit', () => resolve(out === '' ? null : JSON.parse(out))))
  // Opening the write end blocks until the reader has the FIFO open: that is quick.
  const fd = fs.openSync(fifo, 'w')
  const sup = spawn(process.execPath, [CLI, 'start', '-a', '127.0.0.1', '-p', String(port), '-w', '2', '-l', 'info', APP], {
    stdio: ['ignore', fd, 'pipe'], env: { ...process.env, REUSEPORT_TEST_MARKER: marker, FAULTS_DIR: dir }
  })
  fs.closeSync(fd)
  let stderr = ''
  sup.stderr.on('data', d => { stderr += d })
  const exited = new Promise(resolve => sup.once('exit', (code, signal) => resolve({ code, signal })))
  t.teardown(() => {
    sup.kill('SIGKILL')
    reader.kill('SIGKILL')
    for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
    fs.rmSync(dir, { recursive: true, force: true })
  })
  await waitFor(async () => childrenOf(sup.pid).length === 2 && (await get(`http://127.0.0.1:${port}/`)).status === 200, { timeout: 20000, what: 'the workers' })
  // Batches of 6 concurrent requests (new connections, hashed to either slot) until both workers logged.
  const results = []
  for (let batch = 0; batch < 4 && new Set(results.map(r => r.body?.pid)).size < 2; batch++) {
    results.push(...await Promise.all(Array.from({ length: 6 }, () => get(`http://127.0.0.1:${port}/log?n=30&size=9000`, { headersTimeout: 60000 }))))
  }
  t.same(results.map(r => r.status), results.map(() => 200), `${results.length} requests logged 30 lines of 9 KB each`)
  const pids = new Set(results.map(r => r.body?.pid))
  t.equal(pids.size, 2, 'both workers logged')
  t.equal(sup.exitCode, null, `the supervisor is alive (${stderr.trim()})`)
  sup.kill('SIGTERM')
  t.same(await within(exited, 30000, 'still running'), { code: 0, signal: null }, 'SIGTERM exits 0')
  const s = await within(summary, 30000, null)
  t.ok(s, 'the reader saw the end of output once every writer was gone')
  t.equal(s?.invalid, 0, `no spliced line: ${s?.invalid} of ${s?.lines} not JSON ${JSON.stringify(s?.badSamples ?? [])}`)
  const big = s?.parsed.filter(p => p.msg === 'big') ?? []
  t.equal(big.length, results.length * 30, `all ${results.length * 30} long lines arrived: ${big.length}`)
  const left = await waitFor(() => processesWith(marker).length === 0, { timeout: 5000, what: 'no process left' }).catch(() => false)
  t.ok(left, 'no process left behind')
})

t.test('5. an app that forges readiness over IPC: a reload waits for the real boot, and the old worker serves until then', async t => {
  const ctx = await start(t, ['-w', '1'], { env: { FAULTS_FORGE: '1' } })
  const { sup } = ctx
  const [old] = sup.workerPids()
  const bootDelay = 3000
  fs.writeFileSync(path.join(ctx.dir, 'boot-delay'), String(bootDelay))
  const sentAt = Date.now()
  sup.child.kill('SIGHUP')
  let reloadedAt = null
  const samples = []
  // A new connection every 50 ms until the reload is done and 500 ms more.
  while (reloadedAt === null || Date.now() < reloadedAt + 500) {
    if (reloadedAt === null && linesMatching(sup, /^reload: all 1 slots replaced$/).length > 0) reloadedAt = Date.now()
    if (Date.now() - sentAt > 20000) break
    samples.push(get(ctx.url))
    await sleep(50)
  }
  const results = await Promise.all(samples)
  t.ok(reloadedAt !== null, 'the reload completed')
  t.ok(reloadedAt - sentAt >= bootDelay, `the reload completed ${reloadedAt - sentAt} ms after SIGHUP, not before the ${bootDelay} ms boot`)
  t.equal(results.filter(r => r.status !== 200).length, 0, `every one of ${results.length} requests succeeded`)
  const slowest = Math.max(...results.map(r => r.ms))
  t.ok(slowest < 1000, `none waited for the new worker's boot: slowest ${slowest} ms`)
  const servedByNew = results.filter(r => r.body && r.body.pid !== old)
  t.ok(servedByNew.length > 0, 'the new worker serves after the reload')
  await healthy(t, ctx)
})

t.test('6. a process the app spawns while its module loads inherits no FASTIFY_REUSEPORT_* variable and no socket', async t => {
  const ctx = await start(t, ['-w', '1'], { env: { FAULTS_SPAWN_PROBE: '1' } })
  const [worker] = ctx.sup.workerPids()
  const file = path.join(ctx.dir, `probe-${worker}.json`)
  await waitFor(() => fs.existsSync(file) && fs.statSync(file).size > 0, { timeout: 10000, what: 'the probe' })
  const probe = JSON.parse(fs.readFileSync(file, 'utf8'))
  t.same(probe.env, [], 'no FASTIFY_REUSEPORT_* variable')
  const sockets = Object.entries(probe.fds).filter(([, target]) => target.startsWith('socket:'))
  t.same(sockets, [], `no inherited socket among fds 3+ (${JSON.stringify(probe.fds)})`)
  await healthy(t, ctx)
})

t.test('7. HEAD /metrics is 200 with GET\'s headers and no body', async t => {
  const ctx = await start(t, ['-w', '1'])
  const head = await get(ctx.metrics, { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(head.text, '')
  const got = await get(ctx.metrics)
  t.equal(got.status, 200)
  t.match(got.text, /^fastify_reuseport_slot_state\{slot="0",state="ready"\} 1$/m)
  await healthy(t, ctx)
})
