'use strict'

// Ending kept-alive connections gracefully: real fastify servers on loopback,
// real clients (undici, raw sockets, node:http2).
const t = require('tap')
const net = require('node:net')
const http2 = require('node:http2')
const Fastify = require('fastify')
const { Agent, request } = require('undici')
const { openConnections, shed } = require('../../dist/lib/worker/shed')
const { trackSessions } = require('../../dist/lib/plugin/connections')
const { sleep, waitFor } = require('../helpers')

/** A fastify server on 127.0.0.1 that counts its connections as they open and close. */
async function serve (t, opts = {}, routes = () => {}) {
  const app = Fastify(opts)
  trackSessions(app.server)
  app.get('/', async () => ({ ok: true }))
  routes(app)
  const counts = { accepted: 0, closed: 0 }
  app.server.on('connection', socket => {
    counts.accepted++
    socket.once('close', () => counts.closed++)
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { app, counts, port: app.server.address().port }
}

/** Sends one keep-alive request on a raw socket; resolves with the response head once the whole response is in. */
function get (socket, path = '/') {
  return new Promise((resolve, reject) => {
    let data = ''
    const onData = d => {
      data += d
      const end = data.indexOf('\r\n\r\n')
      if (end < 0) return
      const length = Number(/content-length: (\d+)/i.exec(data)?.[1] ?? 0)
      if (data.length < end + 4 + length) return
      socket.off('data', onData)
      socket.off('error', reject)
      resolve(data.slice(0, end))
    }
    socket.on('data', onData)
    socket.once('error', reject)
    socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`)
  })
}

async function connect (port) {
  const socket = net.connect(port, '127.0.0.1')
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  socket.setEncoding('utf8')
  return socket
}

const ended = socket => new Promise(resolve => socket.readyState === 'closed' ? resolve() : socket.once('close', resolve))

t.test('4 keep-alive connections sending continuously: shed(server, 2) closes exactly 2, gracefully; the client reconnects; nothing fails', async t => {
  const { app, counts, port } = await serve(t)
  const agent = new Agent({ connections: 4, pipelining: 1, keepAliveTimeout: 60000 })
  t.teardown(() => agent.close())
  const result = { ok: 0, failed: 0, closeHeaders: 0 }
  let running = true
  const loop = async () => {
    while (running) {
      try {
        const res = await request(`http://127.0.0.1:${port}/`, { dispatcher: agent })
        await res.body.json()
        if (res.statusCode === 200) result.ok++
        else result.failed++
        if (res.headers.connection === 'close') result.closeHeaders++
      } catch {
        result.failed++
      }
    }
  }
  const loops = Promise.all([0, 1, 2, 3].map(loop))
  await waitFor(() => counts.accepted === 4 && result.ok > 400, { what: '4 busy connections' })
  t.equal(openConnections(app.server), 4, 'openConnections counts them')
  const hooks = app.server.listenerCount('request')

  t.equal(shed(app.server, 2), 2, '2 picked')
  t.equal(app.server.listenerCount('request'), hooks + 1, 'a request hook while shedding')
  await waitFor(() => counts.closed === 2 && counts.accepted === 6, { what: '2 closed and 2 new connections' })
  const okAtShed = result.ok
  await sleep(500)
  running = false
  await loops

  t.equal(counts.closed, 2, 'exactly 2 closed')
  t.equal(counts.accepted, 6, 'and the client opened 2 new ones')
  t.equal(result.closeHeaders, 2, 'each closed after a response saying Connection: close')
  t.equal(result.failed, 0, '0 failed requests')
  t.ok(result.ok > okAtShed, `requests went on: ${result.ok}`)
  t.equal(openConnections(app.server), 4)
  t.equal(app.server.listenerCount('request'), hooks, 'no request hook once done: nothing per request while not shedding')
})

t.test('idle connections: the busiest go first, each is closed after idleMs; one that never answered a request stays', async t => {
  const { app, counts, port } = await serve(t)
  const [a, b, c, fresh] = await Promise.all([0, 1, 2, 3].map(() => connect(port)))
  for (let i = 0; i < 3; i++) await get(a)
  for (let i = 0; i < 2; i++) await get(b)
  await get(c)
  t.equal(openConnections(app.server), 4)

  t.equal(shed(app.server, 2, { idleMs: 100 }), 2)
  const started = Date.now()
  await Promise.all([ended(a), ended(b)])
  t.ok(Date.now() - started >= 90, `closed once idle for idleMs: ${Date.now() - started} ms`)
  await sleep(100)
  t.equal(counts.closed, 2, 'a and b closed')
  t.notOk(c.destroyed || fresh.destroyed, 'c and the fresh connection stay')
  t.equal(openConnections(app.server), 2)

  t.equal(shed(app.server, 5, { idleMs: 100 }), 1, 'only c is kept alive')
  await ended(c)
  t.notOk(fresh.destroyed, 'a connection that has not answered a request is not shed')
  t.equal(shed(app.server, 1), 0, 'nothing left to shed')
  fresh.destroy()
})

t.test('a marked idle connection that gets a request answers it with Connection: close, then closes', async t => {
  const { app, port } = await serve(t)
  const socket = await connect(port)
  await get(socket)
  const hooks = app.server.listenerCount('request')
  t.equal(shed(app.server, 1, { idleMs: 60000 }), 1)
  const head = await get(socket)
  t.match(head, /^HTTP\/1\.1 200 OK/, 'the request is served')
  t.match(head, /\r\nconnection: close/i, 'with Connection: close')
  await ended(socket)
  t.pass('and the server closed the connection')
  await waitFor(() => app.server.listenerCount('request') === hooks, { what: 'the hook to go' })
  t.equal(shed(app.server, 1), 0)
})

t.test('a response in flight says Connection: close; a streaming one whose headers are out leaves it to the next', async t => {
  const gates = []
  const { app, port } = await serve(t, {}, app => {
    app.get('/slow', () => new Promise(resolve => gates.push(() => resolve({ slow: true }))))
    app.get('/stream', (req, reply) => {
      reply.raw.writeHead(200, { 'content-length': '4' })
      reply.raw.write('ab')
      gates.push(() => reply.raw.end('cd'))
      return reply
    })
  })
  const socket = await connect(port)
  await get(socket)
  const pending = get(socket, '/slow')
  await waitFor(() => gates.length === 1, { what: 'the request to reach its handler' })
  t.equal(shed(app.server, 1), 1)
  gates.shift()()
  const head = await pending
  t.match(head, /^HTTP\/1\.1 200 OK/)
  t.match(head, /\r\nconnection: close/i)
  await ended(socket)

  const streaming = await connect(port)
  await get(streaming)
  const first = get(streaming, '/stream')
  await waitFor(() => gates.length === 1, { what: 'the stream to start' })
  t.equal(shed(app.server, 1), 1)
  gates.shift()()
  t.match(await first, /\r\nconnection: keep-alive/i, 'its headers had gone out with keep-alive')
  const next = await get(streaming)
  t.match(next, /\r\nconnection: close/i, 'the next response closes')
  await ended(streaming)
})

t.test('HTTP/2: shed closes the busiest session with GOAWAY; its stream in flight completes', async t => {
  let release = null
  const { app, port } = await serve(t, { http2: true }, app => {
    app.get('/slow', () => new Promise(resolve => { release = () => resolve({ slow: true }) }))
  })
  const ask = (session, path = '/') => new Promise((resolve, reject) => {
    const req = session.request({ ':path': path })
    let body = ''
    let status = 0
    req.setEncoding('utf8')
    req.on('response', h => { status = h[':status'] })
    req.on('data', d => { body += d })
    req.on('end', () => resolve({ status, body }))
    req.on('error', reject)
  })
  const busy = http2.connect(`http://127.0.0.1:${port}`)
  const quiet = http2.connect(`http://127.0.0.1:${port}`)
  t.teardown(() => { busy.destroy(); quiet.destroy() })
  for (let i = 0; i < 5; i++) await ask(busy)
  await ask(quiet)
  t.equal(openConnections(app.server), 2)
  let goaway = false
  busy.once('goaway', () => { goaway = true })
  const slow = ask(busy, '/slow')
  await waitFor(() => release !== null, { what: 'the slow stream' })
  t.equal(shed(app.server, 1), 1)
  release()
  t.same(await slow, { status: 200, body: '{"slow":true}' }, 'the stream in flight completes')
  await waitFor(() => goaway && busy.closed, { what: 'the busy session to get GOAWAY and close' })
  t.notOk(quiet.closed, 'the quiet one stays')
  t.same(await ask(quiet), { status: 200, body: '{"ok":true}' })
  await waitFor(() => openConnections(app.server) === 1, { what: 'the server to count 1' })
})

t.test('openConnections adds the connections of extra listeners (::1 beside 127.0.0.1), as lib/plugin/listen.ts serves them', async t => {
  const { kListeners } = require('../../dist/lib/plugin/symbols')
  const { app, port } = await serve(t)
  // What listen.ts does for a second address of 'localhost' (this machine resolves it to 127.0.0.1 only).
  const extra = net.createServer(socket => app.server.emit('connection', socket))
  await new Promise(resolve => extra.listen(0, '::1', resolve))
  app.server[kListeners] = [extra]
  t.teardown(() => extra.close())
  const v4 = await connect(port)
  const v6 = net.connect(extra.address().port, '::1')
  t.teardown(() => { v4.destroy(); v6.destroy() })
  await new Promise((resolve, reject) => v6.once('connect', resolve).once('error', reject))
  await waitFor(() => openConnections(app.server) === 2, { what: 'both counted' })
  t.equal(app.server._connections, 1, 'the main server counts only its own')
  v4.destroy()
  v6.destroy()
  await waitFor(() => openConnections(app.server) === 0, { what: 'both closed' })
  t.pass('back to 0')
})

t.test('shed validates its arguments', async t => {
  const { app } = await serve(t)
  for (const bad of [-1, 1.5, '2', NaN, undefined]) {
    t.throws(() => shed(app.server, bad), { name: 'TypeError', message: `shed needs a connection count, an integer >= 0, received ${String(bad)}` })
  }
  t.throws(() => shed(app.server, 1, { idleMs: 0 }), TypeError)
  t.equal(shed(app.server, 0), 0)
})
