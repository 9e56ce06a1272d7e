'use strict'

// TLS session resumption across workers, reloads and rotations, with real
// clients: openssl s_client (TLS 1.2 -reconnect; TLS 1.3 -sess_out then
// -sess_in) and Node's tls client reusing its session. Before this feature,
// each worker had its own random ticket key: with 2 workers about half the
// reconnections resumed, and none after a SIGHUP (docs/tls.md).
const t = require('tap')
const fs = require('node:fs')
const path = require('node:path')
const { request } = require('undici')
const { CLI, FIXTURES, alive, freePort, processesWith, sleep, startCli, waitFor } = require('../helpers')
const { makeCert, nodeConnect, nodeResume, opensslTicketName, reconnectTls12, resumeTls13, rotated, saveSessionTls13, sessionsTls13 } = require('../tls-clients')
const { spawnSync } = require('node:child_process')

const cert = makeCert()
// Traversable by nobody, for the unreadable key file case.
fs.chmodSync(cert.dir, 0o755)
t.teardown(() => fs.rmSync(cert.dir, { recursive: true, force: true }))
const APP = path.join(FIXTURES, 'tls-app.js')
const NO_CALLBACK = path.join(FIXTURES, 'no-ticket-callback.js')

async function startTls (t, args, { env = {} } = {}) {
  const port = await freePort()
  const sup = await startCli([...args, '-o', '-a', '127.0.0.1', '-p', String(port), APP], { env: { TLS_KEY: cert.key, TLS_CERT: cert.cert, ...env } })
  t.teardown(() => sup.stop('SIGKILL'))
  return { sup, port }
}

const tlsLine = sup => sup.lines.find(l => typeof l.msg === 'string' && l.msg.startsWith('TLS session resumption'))

for (const workers of [2, 4]) {
  t.test(`${workers} workers: sessions resume on any worker`, async t => {
    const metricsPort = await freePort()
    const { sup, port } = await startTls(t, ['-w', String(workers), '--metrics-port', String(metricsPort)])
    t.equal(tlsLine(sup)?.tlsTickets, 'rotating', `start line: ${tlsLine(sup)?.msg}`)
    const v12 = await reconnectTls12(port, 20)
    t.ok(v12.total === 100 && v12.resumed >= 99, `openssl TLS 1.2 -reconnect: ${v12.resumed} of ${v12.total} resumed`)
    const v13 = await sessionsTls13(port, 20)
    t.ok(v13.resumed >= 19, `openssl TLS 1.3 -sess_out/-sess_in: ${v13.resumed} of ${v13.total} resumed`)
    const n13 = await nodeResume(port, { runs: 20 })
    t.ok(n13.resumed >= 19, `Node tls client, TLS 1.3: ${n13.resumed} of ${n13.total} resumed`)
    const n12 = await nodeResume(port, { runs: 20, maxVersion: 'TLSv1.2' })
    t.ok(n12.resumed >= 19, `Node tls client, TLS 1.2: ${n12.resumed} of ${n12.total} resumed`)
    // Counted by each worker ('secureConnection', isSessionReused()) and reported in its health message.
    await sleep(600)
    const text = await (await request(`http://127.0.0.1:${metricsPort}/metrics`)).body.text()
    const count = kind => [...text.matchAll(new RegExp(`^fastify_reuseport_slot_tls_handshakes_total\\{slot="(\\d+)",kind="${kind}"\\} (\\d+)$`, 'gm'))].map(m => Number(m[2]))
    const resumed = count('resumed')
    const full = count('full')
    t.equal(resumed.length, workers, 'a resumed count per slot')
    t.ok(resumed.every(n => n > 0), `every slot resumed sessions: ${resumed}`)
    t.ok(resumed.reduce((a, b) => a + b) >= 99 + 19 * 3, `resumed in /metrics: ${resumed}, full: ${full}`)
    t.notMatch(text, /tls-keys|[A-Za-z0-9+/]{40,}={0,2}/, 'no key in /metrics')
    t.same(await sup.stop('SIGTERM'), { code: 0, signal: null })
  })
}

t.test('a session saved before a SIGHUP resumes after it; keys never reach logs, env or argv', async t => {
  const { sup, port } = await startTls(t, ['-w', '2'])
  const file = path.join(cert.dir, 'before-hup')
  t.ok(await saveSessionTls13(port, file), 'openssl saved a TLS 1.3 session')
  const { session } = await nodeConnect(port, { waitMs: 100 })
  const before = sup.workerPids()
  for (const pid of before) {
    const env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8') + fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    t.notMatch(env, /tls-keys|[A-Za-z0-9+/]{64}={0,2}/, `worker ${pid}: no key in its environment or argv`)
  }
  sup.child.kill('SIGHUP')
  await waitFor(() => sup.lines.some(l => l.msg === 'reload: all 2 slots replaced'), { timeout: 15000, what: 'the reload' })
  await waitFor(() => before.every(pid => !alive(pid)), { timeout: 15000, what: 'the old workers to exit' })
  t.notOk(sup.workerPids().some(pid => before.includes(pid)), 'every worker was replaced, the old ones are gone')
  t.ok(await resumeTls13(port, file), 'openssl: the session from before the SIGHUP resumed')
  t.ok((await nodeConnect(port, { session })).reused, 'Node tls client: the session from before the SIGHUP resumed')
  t.same(await sup.stop('SIGTERM'), { code: 0, signal: null })
  t.notMatch(JSON.stringify(sup.lines) + sup.stderr, /"keys"|tls-keys/, 'no key in the logs')
})

t.test('a crashed worker\'s replacement and a slot added later hold the same keys', async t => {
  const { sup, port } = await startTls(t, ['-w', '2'])
  const { session } = await nodeConnect(port, { waitMs: 100 })
  const [victim] = sup.workerPids()
  process.kill(victim, 'SIGKILL')
  await waitFor(() => sup.lines.some(l => / ready$/.test(l.msg ?? '') && l.workerPid !== victim && l.slot !== undefined), { timeout: 15000, what: 'the respawn' })
  sup.child.kill('SIGTTIN')
  await waitFor(() => sup.lines.some(l => /^scale: slot 3 of 3 added/.test(l.msg ?? '')), { timeout: 15000, what: 'the third slot' })
  let resumed = 0
  for (let i = 0; i < 20; i++) if ((await nodeConnect(port, { session })).reused) resumed++
  t.ok(resumed >= 19, `a session from before the crash and the scale-up: ${resumed} of 20 resumed on 3 workers`)
  t.same(await sup.stop('SIGTERM'), { code: 0, signal: null })
})

t.test('keys rotated every 2 s: a session from before a rotation resumes after it, and expires after two', async t => {
  const { sup, port } = await startTls(t, ['-w', '2', '--tls-ticket-rotation', '2000'])
  t.match(tlsLine(sup)?.msg, 'rotated every 2000 ms')
  // Each client on its own: rotations are seen in the key name of fresh
  // tickets (the one its session holds, then the next), not timed.
  const file = path.join(cert.dir, 'before-rotation')
  t.ok(await saveSessionTls13(port, file), 'openssl saved a TLS 1.3 session')
  let next = await rotated(port, opensslTicketName(file))
  t.ok(await resumeTls13(port, file), 'openssl: resumed after a rotation')
  await rotated(port, next)
  t.notOk(await resumeTls13(port, file), 'openssl: a full handshake two rotations later (the keys do rotate)')
  const { session, name } = await nodeConnect(port, { waitMs: 100 })
  next = await rotated(port, name)
  t.ok((await nodeConnect(port, { session })).reused, 'Node tls client: resumed after a rotation')
  await rotated(port, next)
  t.notOk((await nodeConnect(port, { session })).reused, 'Node tls client: a full handshake two rotations later')
  t.same(await sup.stop('SIGTERM'), { code: 0, signal: null })
})

t.test('HTTP/2 with TLS: sessions resume on any worker', async t => {
  const { sup, port } = await startTls(t, ['-w', '2'], { env: { TLS_HTTP2: '1' } })
  const n = await nodeResume(port, { runs: 20 })
  t.ok(n.resumed >= 19, `Node tls client, TLS 1.3: ${n.resumed} of ${n.total} resumed`)
  const v12 = await reconnectTls12(port, 4)
  t.ok(v12.resumed >= 19, `openssl TLS 1.2 -reconnect: ${v12.resumed} of ${v12.total} resumed`)
  t.same(await sup.stop('SIGTERM'), { code: 0, signal: null })
})

for (const mode of ['rotating', 'single']) {
  t.test(`--balancer cluster, ${mode} mode: sessions resume on any worker (Node's cluster primary hands its first key to later workers: ours win)`, async t => {
    const env = mode === 'single' ? { NODE_OPTIONS: `--require ${NO_CALLBACK}` } : {}
    const { sup, port } = await startTls(t, ['-w', '2', '--balancer', 'cluster', '--tls-ticket-rotation', '2000'], { env })
    t.equal(tlsLine(sup)?.tlsTickets, mode)
    const { name } = await nodeConnect(port, { waitMs: 100 })
    await rotated(port, name)
    // A worker started after the rotation, next to one started before: the
    // primary's kept key (from the first worker's listen) must not replace ours.
    const [victim] = sup.workerPids()
    process.kill(victim, 'SIGKILL')
    await waitFor(() => sup.lines.some(l => / ready$/.test(l.msg ?? '') && l.workerPid !== victim && l.slot !== undefined), { timeout: 15000, what: 'the respawn' })
    // One key: a rotation (every 2 s here) during a run costs one full handshake.
    const n = await nodeResume(port, { runs: 20 })
    t.ok(n.resumed >= 18, `Node tls client, TLS 1.3: ${n.resumed} of ${n.total} resumed`)
    const v12 = await reconnectTls12(port, 4)
    t.ok(v12.resumed >= 18, `openssl TLS 1.2 -reconnect: ${v12.resumed} of ${v12.total} resumed`)
    t.same(await sup.stop('SIGTERM'), { code: 0, signal: null })
  })
}

t.test('without the internal ticket key callback: one key, said in the start line, still shared and kept across a SIGHUP', async t => {
  const { sup, port } = await startTls(t, ['-w', '2'], { env: { NODE_OPTIONS: `--require ${NO_CALLBACK}` } })
  t.equal(tlsLine(sup)?.tlsTickets, 'single', `start line: ${tlsLine(sup)?.msg}`)
  t.match(tlsLine(sup)?.msg, 'one key at a time')
  const v12 = await reconnectTls12(port, 20)
  t.ok(v12.resumed >= 99, `openssl TLS 1.2 -reconnect: ${v12.resumed} of ${v12.total} resumed`)
  const n13 = await nodeResume(port, { runs: 20 })
  t.ok(n13.resumed >= 19, `Node tls client, TLS 1.3: ${n13.resumed} of ${n13.total} resumed`)
  const { session } = await nodeConnect(port, { waitMs: 100 })
  sup.child.kill('SIGHUP')
  await waitFor(() => sup.lines.some(l => l.msg === 'reload: all 2 slots replaced'), { timeout: 15000, what: 'the reload' })
  t.ok((await nodeConnect(port, { session })).reused, 'resumed after the SIGHUP')
  t.same(await sup.stop('SIGTERM'), { code: 0, signal: null })
})

t.test('--tls-ticket-keys: keys from a file, read again on SIGHUP', async t => {
  const file = path.join(cert.dir, 'keys-cli')
  const keys = [0, 1, 2, 3].map(() => require('node:crypto').randomBytes(48))
  fs.writeFileSync(file, Buffer.concat(keys.slice(0, 3)))
  const { sup, port } = await startTls(t, ['-w', '2', '--tls-ticket-keys', file])
  t.match(tlsLine(sup)?.msg, `keys from ${file}`)
  const { session } = await nodeConnect(port, { waitMs: 100 })
  // The documented rotation: drop the first key, append a new one. The old current is now previous.
  fs.writeFileSync(file, Buffer.concat(keys.slice(1, 4)))
  sup.child.kill('SIGHUP')
  await waitFor(() => sup.lines.some(l => l.msg === 'reload: all 2 slots replaced'), { timeout: 15000, what: 'the reload' })
  t.ok(sup.lines.some(l => /TLS ticket keys read again/.test(l.msg)), 'the file was read again')
  const after = await nodeConnect(port, { session })
  t.ok(after.reused, 'a session issued with the old current key resumes after the rotation')
  // Unrelated keys: the sessions of before no longer resume.
  fs.writeFileSync(file, Buffer.concat([0, 1, 2].map(() => require('node:crypto').randomBytes(48))))
  sup.child.kill('SIGHUP')
  await waitFor(() => sup.lines.filter(l => l.msg === 'reload: all 2 slots replaced').length === 2, { timeout: 15000, what: 'the second reload' })
  t.notOk((await nodeConnect(port, { session })).reused, 'keys replaced: a full handshake')
  // A file broken later: logged, the keys in use stay.
  fs.writeFileSync(file, 'short')
  const { session: s2 } = await nodeConnect(port, { waitMs: 100 })
  sup.child.kill('SIGHUP')
  await waitFor(() => sup.lines.filter(l => l.msg === 'reload: all 2 slots replaced').length === 3, { timeout: 15000, what: 'the third reload' })
  t.ok(sup.lines.some(l => /FST_REUSEPORT|TLS ticket key file .*: it holds 5 bytes.*keeping the TLS ticket keys in use/.test(l.msg)), 'a broken file on reload is logged')
  t.ok((await nodeConnect(port, { session: s2 })).reused, 'and the keys in use stay')
  t.same(await sup.stop('SIGTERM'), { code: 0, signal: null })
})

// Root reads any file whatever its mode: the unreadable case runs as nobody (setpriv).
const asNobody = spawnSync('sh', ['-c', 'unset NODE_OPTIONS; exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"', 'sh', process.execPath, CLI, '--help']).status === 0

for (const { name, make, why, nobody } of [
  { name: 'missing', make: f => f, why: 'it does not exist (ENOENT)' },
  { name: 'a directory', make: f => { fs.mkdirSync(f); return f }, why: 'it is a directory (EISDIR)' },
  { name: 'unreadable', make: f => { fs.writeFileSync(f, Buffer.alloc(48)); fs.chmodSync(f, 0o600); return f }, why: 'it is not readable (EACCES)', nobody: true },
  { name: 'of the wrong size', make: f => { fs.writeFileSync(f, Buffer.alloc(47)); return f }, why: 'it holds 47 bytes; it must hold 48 (one key) or 144 (previous, current and next keys)' }
]) {
  t.test(`--tls-ticket-keys ${name}: one line with the path, exit 1, nothing started`, { skip: nobody && !asNobody ? 'setpriv cannot run the CLI as nobody here' : false }, async t => {
    const file = make(path.join(cert.dir, `bad-${name.replace(/\W/g, '')}`))
    const marker = `reuseport-tls-${process.pid}-${Math.random()}`
    const argv = [process.execPath, CLI, 'start', '-w', '2', '-o', '-p', '0', '-a', '127.0.0.1', '--tls-ticket-keys', file, APP]
    // tap's process-info loader, which it adds to NODE_OPTIONS even here, writes where nobody may not.
    const r = spawnSync(nobody ? 'sh' : argv[0], nobody ? ['-c', 'unset NODE_OPTIONS; exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"', 'sh', ...argv] : argv.slice(1),
      { encoding: 'utf8', timeout: 20000, env: { ...process.env, TLS_KEY: cert.key, TLS_CERT: cert.cert, REUSEPORT_TEST_MARKER: marker } })
    t.equal(r.status, 1, 'exit 1')
    t.equal(r.stderr, `fastify-reuseport: FST_REUSEPORT_TLS_TICKET_KEYS: TLS ticket key file ${file}: ${why}${name === 'of the wrong size' ? ', e.g. from "openssl rand 144"' : ''}\n`)
    t.equal(r.stdout, '', 'nothing on stdout: no worker started')
    t.same(processesWith(marker), [], 'no process left')
  })
}
