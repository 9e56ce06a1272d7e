'use strict'

const t = require('tap')
const { spawn, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const Fastify = require('fastify')
const reuseport = require('../..')
const { FIXTURES, ROOT, fdCount, freePort, load, tcpFdCount } = require('../helpers')

/** Runs test/fixtures/serve.js and resolves with its first line and the process. */
function serve (env, { node = process.execPath, cwd = ROOT } = {}) {
  const child = spawn(node, [path.join(FIXTURES, 'serve.js')], { env: { ...process.env, ...env }, cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stderr.on('data', d => { err += d })
  const first = new Promise((resolve, reject) => {
    child.stdout.on('data', d => {
      out += d
      const i = out.indexOf('\n')
      if (i >= 0) resolve(JSON.parse(out.slice(0, i)))
    })
    child.once('exit', code => reject(new Error(`exited ${code}: ${err}`)))
  })
  return { child, first, stderr: () => err }
}

t.test('listen() uses a reuseport socket: port 0, server.address() and addresses() are real', async t => {
  const app = Fastify()
  await app.register(reuseport)
  app.get('/', async () => ({ pid: process.pid }))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address()
  t.ok(port > 0)
  t.same(app.addresses(), [{ address: '127.0.0.1', family: 'IPv4', port }])
  // A second, independent reuseport socket can join the same port.
  const other = Fastify()
  await other.register(reuseport)
  other.get('/', async () => ({ pid: process.pid }))
  await other.listen({ port, host: '127.0.0.1' })
  t.equal(other.server.address().port, port)
  // The kernel may hand this connection to either socket: both serve the route.
  const res = await fetch(`http://127.0.0.1:${port}/`)
  t.equal(res.status, 200)
  await other.close()
  await app.close()
})

t.test('default listen options (host localhost) serve on every localhost address', async t => {
  const app = Fastify()
  await app.register(reuseport)
  app.get('/', async () => 'ok')
  await app.listen()
  const addresses = app.addresses()
  const { port } = app.server.address()
  const loopbacks = (await require('node:dns/promises').lookup('localhost', { all: true })).map(a => a.address)
  t.same(addresses.map(a => a.address).sort(), [...new Set(loopbacks)].sort(), 'addresses() lists every localhost address')
  for (const a of addresses) {
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address
    t.equal(await (await fetch(`http://${host}:${port}/`)).text(), 'ok', `served on ${host}`)
  }
  await app.close()
})

t.test('two processes with default listen options both serve one port, with a fair share', async t => {
  const port = await freePort()
  const env = { LISTEN: JSON.stringify({ port }) }
  const a = serve(env)
  const b = serve(env)
  t.teardown(() => { a.child.kill(); b.child.kill() })
  const [la, lb] = await Promise.all([a.first, b.first])
  t.notOk(la.error, 'first process listens')
  t.notOk(lb.error, 'second process listens')
  t.same(lb.listening.map(x => x.address), la.listening.map(x => x.address), 'both listen on the same addresses')
  const r = await load({ url: `http://127.0.0.1:${port}`, durationMs: 1500, connections: 4, keepAlive: false })
  t.equal(r.failed, 0, 'no failed request')
  const shares = [a.child.pid, b.child.pid].map(pid => (r.pids[pid] ?? 0) / r.ok)
  t.ok(shares.every(s => s > 0.3), `each process gets a fair share of new connections: ${shares.map(s => (s * 100).toFixed(1) + '%')}`)
})

t.test('the backlog option reaches listen(2): ss -ltn Send-Q', { skip: !fs.existsSync('/usr/bin/ss') && !fs.existsSync('/bin/ss') && 'ss (iproute2) is not installed' }, async t => {
  const app = Fastify()
  await app.register(reuseport, { backlog: 77 })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const other = Fastify()
  await other.register(reuseport)
  await other.listen({ port: app.server.address().port, host: '127.0.0.1', backlog: 33 })
  const { port } = app.server.address()
  const ss = execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' })
  const sendQ = ss.trim().split('\n').map(l => Number(l.trim().split(/\s+/)[2])).sort((x, y) => x - y)
  t.same(sendQ, [33, 77], `plugin option and listen option both reach the kernel:\n${ss}`)
  await other.close()
  await app.close()
})

t.test('bad input: a clear error with its code, and no fd leaked', async t => {
  const plain = net.createServer()
  await new Promise(resolve => plain.listen(0, '127.0.0.1', resolve))
  const held = plain.address().port
  t.teardown(() => plain.close())

  const listenCases = [
    ['port out of range', { port: 70000, host: '127.0.0.1' }, { code: 'FST_REUSEPORT_INVALID_PORT', message: /70000/ }],
    ['negative port', { port: -1, host: '127.0.0.1' }, { code: 'FST_REUSEPORT_INVALID_PORT' }],
    ['port held by an ordinary socket', { port: held, host: '127.0.0.1' },
      { code: 'EADDRINUSE', syscall: 'listen', address: '127.0.0.1', port: held, message: `listen EADDRINUSE: address already in use 127.0.0.1:${held}` }],
    ['unresolvable host', { port: 0, host: 'no-such-host.invalid' }, { code: 'ENOTFOUND', message: /no-such-host\.invalid/ }, tcpFdCount],
    ['negative backlog', { port: 0, host: '127.0.0.1', backlog: -5 }, { code: 'FST_REUSEPORT_INVALID_OPTION', message: /"backlog".*-5/ }],
    ['non-integer backlog', { port: 0, host: '127.0.0.1', backlog: 1.5 }, { code: 'FST_REUSEPORT_INVALID_OPTION', message: /"backlog".*1\.5/ }]
  ]
  for (const [name, opts, expected, count = fdCount] of listenCases) {
    const app = Fastify()
    await app.register(reuseport)
    await app.ready()
    const before = count()
    const start = Date.now()
    await t.rejects(app.listen(opts), expected, name)
    t.ok(Date.now() - start < 5000, `${name}: fails at once`)
    t.equal(count(), before, `${name}: no fd leaked`)
    await app.close()
  }

  const registerCases = [
    ['backlog as a string', { backlog: '10' }, /Invalid option "backlog": must be a non-negative integer, received '10'/],
    ['negative backlog', { backlog: -1 }, /"backlog".*received -1/],
    ['ipv6Only not a boolean', { ipv6Only: 'yes' }, /Invalid option "ipv6Only": must be a boolean, received 'yes'/],
    ['unknown option', { backlgo: 10 }, /Invalid option "backlgo": is not an option/]
  ]
  for (const [name, opts, message] of registerCases) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(reuseport, opts) }, { code: 'FST_REUSEPORT_INVALID_OPTION', message }, name)
    await app.close()
  }
})

t.test('where the addon did not build, the plugin warns once and listens normally', async t => {
  // A copy of the package without build/: node-gyp-build finds no addon.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-nobuild-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.cpSync(path.join(ROOT, 'dist'), path.join(dir, 'dist'), { recursive: true })
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'))
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'))
  const script = `
    const Fastify = require('fastify')
    const app = Fastify({ logger: { level: 'warn' } })
    app.register(require(${JSON.stringify(dir)}))
    app.get('/', async () => 'fallback')
    app.listen({ port: 0, host: '127.0.0.1' }).then(async () => {
      const r = await fetch('http://127.0.0.1:' + app.server.address().port + '/')
      console.log(JSON.stringify({ body: await r.text() }))
      await app.close()
    })`
  const out = execFileSync(process.execPath, ['-e', script], { cwd: dir, encoding: 'utf8' })
  const lines = out.trim().split('\n').map(l => JSON.parse(l))
  const warnings = lines.filter(l => l.level === 40)
  t.equal(warnings.length, 1, 'one warning')
  t.equal(warnings[0].code, 'FST_REUSEPORT_UNSUPPORTED')
  t.match(warnings[0].msg, /native addon could not be loaded.*listening without SO_REUSEPORT/)
  t.same(lines.at(-1), { body: 'fallback' }, 'the app still serves')
})

t.test('ipv6Only: host :: is dual-stack by default, IPv6 only when asked', async t => {
  for (const ipv6Only of [false, true]) {
    const app = Fastify()
    await app.register(reuseport, { ipv6Only })
    app.get('/', async () => 'ok')
    await app.listen({ port: 0, host: '::' })
    const { port } = app.server.address()
    t.equal(await (await fetch(`http://[::1]:${port}/`)).text(), 'ok', `ipv6Only ${ipv6Only}: IPv6 served`)
    const v4 = await fetch(`http://127.0.0.1:${port}/`).then(r => r.text(), err => err.cause?.code)
    t.equal(v4, ipv6Only ? 'ECONNREFUSED' : 'ok', `ipv6Only ${ipv6Only}: IPv4 ${ipv6Only ? 'refused' : 'served'}`)
    await app.close()
  }
})
