'use strict'

// The plugin's tlsTicketKeys: processes no supervisor of ours started (here
// the real fastify-cli, twice on one port, and next to a supervisor of ours)
// share TLS sessions through one key file, read again on SIGHUP or a change.
const t = require('tap')
const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { FIXTURES, ROOT, freePort, spawnUntil, startCli, waitFor } = require('../helpers')
const { makeCert, nodeConnect, nodeResume, reconnectTls12 } = require('../tls-clients')

const FASTIFY_CLI = path.join(ROOT, 'node_modules', 'fastify-cli', 'cli.js')
const APP = path.join(FIXTURES, 'tls-cli-app.js')
const cert = makeCert()
// Readable by nobody, for the unreadable key file case.
fs.chmodSync(cert.dir, 0o755)
fs.chmodSync(cert.key, 0o644)
t.teardown(() => fs.rmSync(cert.dir, { recursive: true, force: true }))

function fastifyStart (t, port, keys, extra = []) {
  const env = { ...process.env, TLS_KEY: cert.key, TLS_CERT: cert.cert, ...(keys ? { TLS_TICKET_KEYS: keys } : {}) }
  const s = spawnUntil('fastify start', [process.execPath, FASTIFY_CLI, 'start', '-o', '-a', '127.0.0.1', '-p', String(port), '-l', 'info', ...extra, APP], { env },
    out => out.includes('Server listening'))
  t.teardown(() => s.child.kill('SIGKILL'))
  return s
}

/** Two fastify start processes on one port (fastify-cli splices its arguments out of process.argv: their argv are the same). */
async function pair (t, keys) {
  const port = await freePort()
  const a = fastifyStart(t, port, keys)
  const b = fastifyStart(t, port, keys, ['--body-limit', '2048'])
  await Promise.all([a.ready, b.ready])
  return { port, a, b }
}

/** Resolves once every process has logged `n` re-reads of its key file. */
const reread = (procs, n) => waitFor(() => procs.every(p => p.output().split('TLS ticket keys read again').length > n), { timeout: 5000, what: 'the key file to be read again' })

t.test('two fastify start processes sharing a key file resume each other\'s sessions; a changed file is read again', async t => {
  const keys = path.join(cert.dir, 'shared')
  const k = [0, 1, 2, 3].map(() => crypto.randomBytes(48))
  fs.writeFileSync(keys, Buffer.concat(k.slice(0, 3)))
  const { port, a, b } = await pair(t, keys)
  t.match(a.output(), `TLS session tickets from ${keys}`)
  const v12 = await reconnectTls12(port, 20)
  t.ok(v12.resumed >= 99, `openssl TLS 1.2 -reconnect: ${v12.resumed} of ${v12.total} resumed`)
  const n13 = await nodeResume(port, { runs: 20 })
  t.ok(n13.resumed >= 19, `Node tls client, TLS 1.3: ${n13.resumed} of ${n13.total} resumed`)
  // The documented rotation: drop the first key, append a new one. fastify
  // start closes on SIGHUP (close-with-grace): the plugin sees the change itself.
  const { session } = await nodeConnect(port, { waitMs: 100 })
  fs.writeFileSync(keys, Buffer.concat(k.slice(1, 4)))
  await reread([a, b], 1)
  const after = await nodeResume(port, { runs: 10 })
  t.ok((await nodeConnect(port, { session })).reused, 'a session from before the rotation resumes')
  t.ok(after.resumed >= 9, `and new ones too: ${after.resumed} of ${after.total}`)
})

t.test('in a process of its own: SIGHUP reads the file again; a broken file keeps the keys in use', async t => {
  const https = require('node:https')
  const Fastify = require('fastify')
  const keys = path.join(cert.dir, 'hup')
  const k = [0, 1, 2, 3].map(() => crypto.randomBytes(48))
  fs.writeFileSync(keys, Buffer.concat(k.slice(0, 3)))
  const lines = []
  const listeners = process.listenerCount('SIGHUP')
  const app = Fastify({ https: { key: fs.readFileSync(cert.key), cert: fs.readFileSync(cert.cert) }, logger: { level: 'info', stream: { write: l => lines.push(JSON.parse(l)) } } })
  await app.register(require('../..'), { tlsTicketKeys: keys })
  app.get('/', async () => 'ok')
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  t.ok(app.server instanceof https.Server)
  const port = app.server.address().port
  const { session } = await nodeConnect(port, { waitMs: 100 })
  t.ok((await nodeConnect(port, { session })).reused, 'resumed')
  fs.writeFileSync(keys, Buffer.concat(k.slice(1, 4)))
  process.kill(process.pid, 'SIGHUP')
  await waitFor(() => lines.some(l => /read again/.test(l.msg)), { what: 'the re-read' })
  t.ok((await nodeConnect(port, { session })).reused, 'a session issued with the old current key resumes after the rotation')
  fs.writeFileSync(keys, Buffer.concat([0, 1, 2].map(() => crypto.randomBytes(48))))
  process.kill(process.pid, 'SIGHUP')
  await waitFor(() => lines.filter(l => /read again/.test(l.msg)).length >= 2, { what: 'the second re-read' })
  t.notOk((await nodeConnect(port, { session })).reused, 'keys replaced: a full handshake')
  const { session: s2 } = await nodeConnect(port, { waitMs: 100 })
  fs.writeFileSync(keys, 'x')
  process.kill(process.pid, 'SIGHUP')
  await waitFor(() => lines.some(l => /keeping the TLS ticket keys in use/.test(l.msg)), { what: 'the error line' })
  t.match(lines.find(l => /keeping/.test(l.msg)).msg, `TLS ticket key file ${keys}: it holds 1 bytes`)
  t.ok((await nodeConnect(port, { session: s2 })).reused, 'a broken file keeps the keys in use')
  await app.close()
  t.equal(process.listenerCount('SIGHUP'), listeners, 'close removes its SIGHUP listener')
})

t.test('a fastify start process and a fastify-reuseport supervisor sharing a key file resume each other\'s sessions (their argv differ)', async t => {
  // Node's default session ID context is a hash of process.argv, and OpenSSL
  // refuses a session from another context: both must set the same fixed one.
  const keys = path.join(cert.dir, 'mixed')
  fs.writeFileSync(keys, crypto.randomBytes(144))
  const port = await freePort()
  const plain = fastifyStart(t, port, keys)
  await plain.ready
  const supPort = await freePort()
  const sup = await startCli(['-w', '1', '-o', '-a', '127.0.0.1', '-p', String(supPort), '--tls-ticket-keys', keys, path.join(FIXTURES, 'tls-app.js')],
    { env: { TLS_KEY: cert.key, TLS_CERT: cert.cert } })
  t.teardown(() => sup.stop('SIGKILL'))
  for (const maxVersion of ['TLSv1.2', 'TLSv1.3']) {
    const fromPlain = await nodeConnect(port, { maxVersion, waitMs: 100 })
    t.ok((await nodeConnect(supPort, { session: fromPlain.session, maxVersion })).reused, `${maxVersion}: a session from fastify start resumes on the supervisor's worker`)
    const fromSup = await nodeConnect(supPort, { maxVersion, waitMs: 100 })
    t.ok((await nodeConnect(port, { session: fromSup.session, maxVersion })).reused, `${maxVersion}: and the other way round`)
  }
  await sup.stop('SIGTERM')
})

t.test('without the option, two processes resume about half of the time (the kernel picks one per connection)', async t => {
  const { port } = await pair(t, undefined)
  const v12 = await reconnectTls12(port, 20)
  t.ok(v12.resumed < 95, `openssl TLS 1.2 -reconnect: ${v12.resumed} of ${v12.total} resumed`)
})

const asNobody = spawnSync('sh', ['-c', 'unset NODE_OPTIONS; exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"', 'sh', process.execPath, '-e', '0']).status === 0

for (const { name, make, why, nobody } of [
  { name: 'missing', make: f => f, why: 'it does not exist (ENOENT)' },
  { name: 'a directory', make: f => { fs.mkdirSync(f); return f }, why: 'it is a directory (EISDIR)' },
  { name: 'unreadable', make: f => { fs.writeFileSync(f, Buffer.alloc(48)); fs.chmodSync(f, 0o600); return f }, why: 'it is not readable (EACCES)', nobody: true },
  { name: 'of the wrong size', make: f => { fs.writeFileSync(f, Buffer.alloc(96)); return f }, why: 'it holds 96 bytes; it must hold 48 (one key) or 144' }
]) {
  t.test(`tlsTicketKeys ${name}: fastify start fails with the path and FST_REUSEPORT_TLS_TICKET_KEYS`, { skip: nobody && !asNobody ? 'setpriv cannot run node as nobody here' : false }, async t => {
    const file = make(path.join(cert.dir, `bad-${name.replace(/\W/g, '')}`))
    const argv = [process.execPath, FASTIFY_CLI, 'start', '-o', '-a', '127.0.0.1', '-p', '0', APP]
    // Root reads any file: the unreadable case runs as nobody. tap's process-info loader (NODE_OPTIONS) writes where nobody may not.
    const r = spawnSync(nobody ? 'sh' : argv[0], nobody ? ['-c', 'unset NODE_OPTIONS; exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"', 'sh', ...argv] : argv.slice(1),
      { encoding: 'utf8', timeout: 20000, env: { ...process.env, TLS_KEY: cert.key, TLS_CERT: cert.cert, TLS_TICKET_KEYS: file } })
    t.not(r.status, 0, `exit ${r.status}`)
    t.match(r.stdout + r.stderr, 'FST_REUSEPORT_TLS_TICKET_KEYS')
    t.match(r.stdout + r.stderr, `TLS ticket key file ${file}: ${why}`)
    t.notMatch(r.stdout + r.stderr, 'Server listening', 'never listened')
  })
}

t.test('tlsTicketKeys must be a path', async t => {
  const Fastify = require('fastify')
  const app = Fastify()
  await t.rejects(app.register(require('../..'), { tlsTicketKeys: 42 }).ready(), { code: 'FST_REUSEPORT_INVALID_OPTION' })
})
