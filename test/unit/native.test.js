'use strict'

// The addon against the real kernel: sockets on loopback, no mocks.
const t = require('tap')
const net = require('node:net')
const { loadNative } = require('../../dist/lib/common/native')
const { steerProgram } = require('../../dist/index')
const { fdCount, sleep, waitFor } = require('../helpers')

const { binding, reason } = loadNative()
if (binding === null) {
  t.fail(`native addon did not load: ${reason}`)
  process.exit(1)
}

t.test('createListener returns a listening SO_REUSEPORT socket; several share one port', async t => {
  const a = binding.createListener('127.0.0.1', 0, 128, false)
  const b = binding.createListener('127.0.0.1', a.port, 64, false)
  t.ok(a.port > 0, 'port 0 resolves to a real port')
  t.equal(b.port, a.port)
  t.same(binding.queueInfo(a.fd), { listening: true, queued: 0, backlog: 128 })
  t.same(binding.queueInfo(b.fd), { listening: true, queued: 0, backlog: 64 })
  binding.close(a.fd)
  binding.close(b.fd)
})

t.test('queueInfo counts connections waiting in the accept queue', async t => {
  const l = binding.createListener('127.0.0.1', 0, 128, false)
  const sockets = []
  for (let i = 0; i < 5; i++) sockets.push(net.connect(l.port, '127.0.0.1'))
  await waitFor(() => binding.queueInfo(l.fd).queued === 5, { what: '5 queued connections' })
  t.equal(binding.queueInfo(l.fd).queued, 5)
  for (const s of sockets) s.destroy()
  binding.close(l.fd)
})

t.test('IPv6 and dual-stack', async t => {
  const v6 = binding.createListener('::1', 0, 16, true)
  t.ok(v6.port > 0)
  binding.close(v6.fd)
  const dual = binding.createListener('::', 0, 16, false)
  const c = net.connect(dual.port, '127.0.0.1')
  await new Promise((resolve, reject) => c.once('connect', resolve).once('error', reject))
  t.pass('an IPv4 client reaches a dual-stack :: listener')
  c.destroy()
  binding.close(dual.fd)
})

t.test('errors look like Node\'s and leak no fd', async t => {
  const before = fdCount()
  const plain = net.createServer()
  await new Promise(resolve => plain.listen(0, '127.0.0.1', resolve))
  const { port } = plain.address()
  const start = Date.now()
  const err = t.throws(() => binding.createListener('127.0.0.1', port, 511, false))
  t.ok(Date.now() - start < 1000, 'fails at once')
  t.equal(err.code, 'EADDRINUSE')
  t.equal(err.errno, -98)
  t.equal(err.syscall, 'listen')
  t.equal(err.address, '127.0.0.1')
  t.equal(err.port, port)
  t.equal(err.message, `listen EADDRINUSE: address already in use 127.0.0.1:${port}`)
  await new Promise(resolve => plain.close(resolve))

  // 192.0.2.1 (TEST-NET-1) is on no interface here: bind fails.
  const na = t.throws(() => binding.createListener('192.0.2.1', 0, 511, false))
  t.equal(na.code, 'EADDRNOTAVAIL')
  t.equal(na.syscall, 'bind')
  t.match(na.message, /^bind EADDRNOTAVAIL: .* 192\.0\.2\.1:0$/)
  t.equal(fdCount(), before, 'no fd leaked')
})

t.test('bad arguments throw TypeError', async t => {
  const before = fdCount()
  const cases = [
    [['127.0.0.1', 70000, 1, false], 'ERR_OUT_OF_RANGE', /"port" argument must be an integer >= 0 and <= 65535\. Received 70000/],
    [['127.0.0.1', -1, 1, false], 'ERR_OUT_OF_RANGE', /"port"/],
    [['127.0.0.1', 1.5, 1, false], 'ERR_OUT_OF_RANGE', /"port"/],
    [['127.0.0.1', '80', 1, false], 'ERR_INVALID_ARG_TYPE', /"port" argument must be of type number/],
    [['127.0.0.1', 0, -1, false], 'ERR_OUT_OF_RANGE', /"backlog"/],
    [['127.0.0.1', 0, 1, 'yes'], 'ERR_INVALID_ARG_TYPE', /"ipv6Only"/],
    [['localhost', 0, 1, false], 'ERR_INVALID_ARG_VALUE', /numeric IP address\. Received 'localhost'/],
    [[42, 0, 1, false], 'ERR_INVALID_ARG_TYPE', /"address"/]
  ]
  for (const [args, code, message] of cases) {
    const err = t.throws(() => binding.createListener(...args), JSON.stringify(args))
    t.type(err, TypeError)
    t.equal(err.code, code)
    t.match(err.message, message)
  }
  for (const fn of ['close', 'queueInfo', 'detachSteering']) {
    t.throws(() => binding[fn](-1), { code: 'ERR_OUT_OF_RANGE' }, `${fn}(-1)`)
    t.throws(() => binding[fn]('3'), { code: 'ERR_INVALID_ARG_TYPE' }, `${fn}('3')`)
  }
  t.throws(() => binding.attachSteering(0, [6, 0, 0, 0]), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => binding.attachSteering(0, new Uint32Array(3)), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => binding.attachSteering(0, Uint32Array.of(0x10000, 0, 0, 0)), { code: 'ERR_OUT_OF_RANGE' })
  t.equal(fdCount(), before, 'no fd leaked')
})

t.test('errno errors from operations on a bad fd', async t => {
  const err = t.throws(() => binding.queueInfo(987654))
  t.equal(err.code, 'EBADF')
  t.equal(err.syscall, 'getsockopt')
  t.throws(() => binding.close(987654), { code: 'EBADF', syscall: 'close' })
  t.throws(() => binding.attachSteering(987654, steerProgram([1])), { code: 'EBADF', syscall: 'setsockopt' })
})

/** Opens n connections to port and reports how many each listener's accept queue got. */
async function spread (listeners, port, n) {
  const sockets = []
  for (let i = 0; i < n; i++) {
    const s = net.connect(port, '127.0.0.1')
    await new Promise((resolve, reject) => s.once('connect', resolve).once('error', reject))
    sockets.push(s)
  }
  await sleep(50)
  const counts = listeners.map(l => binding.queueInfo(l.fd).queued)
  for (const s of sockets) s.destroy()
  return counts
}

t.test('steering: a program that allows one index sends every new connection to that socket', async t => {
  const a = binding.createListener('127.0.0.1', 0, 256, false)
  const b = binding.createListener('127.0.0.1', a.port, 256, false)
  const c = binding.createListener('127.0.0.1', a.port, 256, false)
  const group = [a, b, c]

  binding.attachSteering(a.fd, steerProgram([1, 0, 0]))
  t.same(await spread(group, a.port, 30), [30, 0, 0], 'index 0 only')
  binding.attachSteering(b.fd, steerProgram([0, 0, 1])) // re-attaching replaces the program
  // The first 30 stay in index 0's accept queue: nobody accepts them.
  t.same(await spread(group, a.port, 30), [30, 0, 30], 'then index 2 only')
  for (const l of group) binding.close(l.fd)

  const x = binding.createListener('127.0.0.1', 0, 256, false)
  const y = binding.createListener('127.0.0.1', x.port, 256, false)
  const z = binding.createListener('127.0.0.1', x.port, 256, false)
  binding.attachSteering(z.fd, steerProgram([1, 0, 1])) // any socket of the group attaches for all
  const counts = await spread([x, y, z], x.port, 60)
  t.equal(counts[1], 0, 'index 1 gets nothing')
  t.ok(counts[0] > 10 && counts[2] > 10, `indices 0 and 2 share randomly: ${counts}`)

  binding.detachSteering(x.fd)
  binding.detachSteering(x.fd) // detaching twice is not an error
  for (const l of [x, y, z]) binding.close(l.fd)
})

t.test('steering: weights [3, 1, 0] send about 75% and 25% of new connections, and none to the third socket', async t => {
  const n = 400
  const group = [binding.createListener('127.0.0.1', 0, 1024, false)]
  for (let i = 0; i < 2; i++) group.push(binding.createListener('127.0.0.1', group[0].port, 1024, false))
  binding.attachSteering(group[0].fd, steerProgram([3, 1, 0]))
  const counts = await spread(group, group[0].port, n)
  for (const l of group) binding.close(l.fd)
  // Binomial(400, 0.75): mean 300, sd 8.7. Five sd either side fails about
  // once in two million correct runs; an even split (200) or the hash fails.
  const sd = Math.sqrt(n * 0.75 * 0.25)
  t.equal(counts[0] + counts[1] + counts[2], n, `every connection queued: ${counts}`)
  t.ok(Math.abs(counts[0] - 300) <= 5 * sd, `index 0 gets about 300 of ${n}: ${counts[0]}`)
  t.equal(counts[2], 0, 'weight 0 gets none')
})

t.test('steerProgram validates its input and compiles cumulative thresholds', async t => {
  for (const bad of [[], [1.5, -1], [-1], [0, 0], [NaN], [Infinity, 1], ['1'], 'x', null, new Array(2001).fill(1)]) {
    const err = t.throws(() => steerProgram(bad), TypeError, JSON.stringify(bad)?.slice(0, 20))
    t.match(err.message, /^steerProgram needs 1 to 2000 finite weights >= 0/)
  }
  t.match(t.throws(() => steerProgram([0, -2])).message, /received \[0,-2\]$/, 'names the value')
  t.same(Array.from(steerProgram([0, 0, 0, 5])), [6, 0, 0, 3], 'one allowed index: ret')
  t.same(Array.from(steerProgram([1, 0, 1])), [0x20, 0, 0, 0xfffff038, 0x35, 1, 0, 2 ** 31, 6, 0, 0, 0, 6, 0, 0, 2],
    'ld random; below half: index 0; else index 2')
  const three = steerProgram([1, 2, 1])
  t.equal(three.length, 4 * (1 + 2 * 2 + 1))
  t.same([three[7], three[15]], [2 ** 30, 3 * 2 ** 30], 'thresholds at 1/4 and 3/4 of the u32 range')
  t.equal(steerProgram([1e-12, 1])[7], 0, 'a vanishing share rounds to a threshold of 0')
  t.equal(steerProgram([1, 1e-12])[7], 2 ** 32 - 1, 'thresholds stay inside the u32 range')
})

t.test('reapOrphans validates its argument and reaps nothing it must keep', async t => {
  t.throws(() => binding.reapOrphans('1'), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => binding.reapOrphans(['1']), { code: 'ERR_INVALID_ARG_TYPE' })
  t.equal(binding.reapOrphans([]), 0, 'no exited child here')
})

t.test('notify sends a datagram with fds (SCM_RIGHTS); socketInfo says what a socket is', async t => {
  const os = require('node:os')
  const path = require('node:path')
  const before = fdCount()
  const { fd } = binding.createListener('127.0.0.1', 0, 16, false)
  t.match(binding.socketInfo(fd), { address: '127.0.0.1', family: 4, stream: true, listening: true, reusePort: true })
  const missing = path.join(os.tmpdir(), `frp-none-${process.pid}.sock`)
  t.throws(() => binding.notify(missing, 'READY=1', [fd]), { code: 'ENOENT', syscall: 'sendmsg', errno: -2 })
  t.throws(() => binding.notify('relative.sock', 'READY=1', []), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => binding.notify('/x', 'READY=1', [-1]), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => binding.notify('/x', 5, []), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => binding.socketInfo(-1), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => binding.socketInfo(0x7ffffff0), { code: 'EBADF', syscall: 'getsockname' })
  // A real receiver: python's socket.recv_fds, as systemd would receive it.
  const sock = path.join(os.tmpdir(), `frp-notify-${process.pid}.sock`)
  const receiver = require('node:child_process').spawn('python3', ['-c', `
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); print('bound', flush=True)
msg, fds, _, _ = socket.recv_fds(s, 1024, 8)
print(msg.decode().replace('\\n', ' '), len(fds), os.fstat(fds[0]).st_ino, flush=True)
os.unlink(sys.argv[1])
`, sock], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  receiver.stdout.on('data', d => { out += d })
  await waitFor(() => out.includes('bound'), { what: 'the receiver' })
  binding.notify(sock, 'FDSTORE=1\nFDNAME=slot-0', [fd])
  await new Promise(resolve => receiver.once('close', resolve))
  const inode = require('node:fs').readlinkSync(`/proc/self/fd/${fd}`).match(/\d+/)[0]
  t.match(out, new RegExp(`FDSTORE=1 FDNAME=slot-0 1 ${inode}`), 'the same socket arrives, with its message')
  binding.close(fd)
  t.equal(fdCount(), before, 'no fd leaked')
}, { skip: !require('../helpers').hasCommand('python3') && 'needs python3 to receive the datagram' })
t.test('setParentDeathSignal validates its argument and returns the parent pid', async t => {
  for (const bad of [[], ['15'], [null]]) t.throws(() => binding.setParentDeathSignal(...bad), { code: 'ERR_INVALID_ARG_TYPE' }, JSON.stringify(bad))
  for (const bad of [-1, 1.5, 65, 1e20, NaN]) t.throws(() => binding.setParentDeathSignal(bad), { code: 'ERR_OUT_OF_RANGE' }, String(bad))
  t.equal(binding.setParentDeathSignal(0), process.ppid, 'clears it, and says who the parent is')
})

t.test('setParentDeathSignal: a SIGKILLed parent takes its child with it', async t => {
  // parent -> child; the child asks for SIGTERM on its parent's death and
  // says its pid; the parent is SIGKILLed and can pass nothing on.
  const { spawn } = require('node:child_process')
  const addon = JSON.stringify(require('node:path').join(__dirname, '..', '..'))
  const child = `const b = require('node-gyp-build')(${addon}); const p = b.setParentDeathSignal(15);` +
    'process.stdout.write(`${process.pid} ${p === process.ppid}\\n`); setInterval(() => {}, 1000)'
  const parent = spawn(process.execPath, ['-e', `require('child_process').spawn(process.execPath, ['-e', ${JSON.stringify(child)}], { stdio: 'inherit' }); setInterval(() => {}, 1000)`],
    { stdio: ['ignore', 'pipe', 'inherit'] })
  const line = await new Promise(resolve => parent.stdout.once('data', d => resolve(String(d).trim())))
  const [pid, sameParent] = line.split(' ')
  t.equal(sameParent, 'true', 'the pid returned is the parent')
  parent.kill('SIGKILL')
  const deadline = Date.now() + 5000
  let alive = true
  while (alive && Date.now() < deadline) {
    try { process.kill(Number(pid), 0); await new Promise(resolve => setTimeout(resolve, 20)) } catch { alive = false }
  }
  if (alive) process.kill(Number(pid), 'SIGKILL')
  t.notOk(alive, 'the child got SIGTERM and exited')
})

const threads = () => require('node:fs').readdirSync('/proc/self/task').length

t.test('watchReadable calls back once when a connection queues, on any of its sockets; unwatchReadable stops it', async t => {
  const a = binding.createListener('127.0.0.1', 0, 16, false)
  const b = binding.createListener('127.0.0.1', a.port, 16, false)
  const fds = fdCount()
  const tasks = threads()
  let calls = 0
  const watch = binding.watchReadable([a.fd, b.fd], () => { calls++ })
  t.equal(threads(), tasks + 1, 'one thread waits')
  await sleep(100)
  t.equal(calls, 0, 'nothing queued: no call')
  const c = net.connect(a.port, '127.0.0.1')
  await waitFor(() => calls === 1, { what: 'the watch to fire' })
  await waitFor(() => threads() === tasks, { what: 'its thread to end' })
  const d = net.connect(a.port, '127.0.0.1')
  await sleep(100)
  t.equal(calls, 1, 'once only')
  binding.unwatchReadable(watch)
  binding.unwatchReadable(watch)
  t.equal(fdCount(), fds + 2, 'its epoll and eventfd closed (the 2 clients are open)')

  // Connections wait: its thread may see them before the stop, and must not call then either.
  const stopped = binding.watchReadable([a.fd], () => { calls++ })
  binding.unwatchReadable(stopped)
  t.equal(threads(), tasks, 'a stopped watch leaves no thread')
  await sleep(100)
  t.equal(calls, 1, 'and never calls, though connections wait')
  t.equal(fdCount(), fds + 2)
  // 200 arm/stop cycles: no fd or thread left behind.
  for (let i = 0; i < 200; i++) binding.unwatchReadable(binding.watchReadable([a.fd, b.fd], () => {}))
  t.equal(fdCount(), fds + 2, 'no fd leaked over 200 watches')
  t.equal(threads(), tasks, 'no thread leaked over 200 watches')
  c.destroy()
  d.destroy()
  await waitFor(() => fdCount() === fds, { what: 'the clients closed' })
  binding.close(a.fd)
  binding.close(b.fd)
})

t.test('watchReadable validates its arguments and leaks no fd on an error', async t => {
  const l = binding.createListener('127.0.0.1', 0, 16, false)
  const before = fdCount()
  const tasks = threads()
  t.throws(() => binding.watchReadable(l.fd, () => {}), { code: 'ERR_INVALID_ARG_TYPE', name: 'TypeError' })
  t.throws(() => binding.watchReadable([l.fd, 'x'], () => {}), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => binding.watchReadable([-1], () => {}), { code: 'ERR_OUT_OF_RANGE', message: /fds\[0\]/ })
  t.throws(() => binding.watchReadable([1.5], () => {}), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => binding.watchReadable([l.fd], null), { code: 'ERR_INVALID_ARG_TYPE', message: /callback/ })
  // The second fd is closed: the epoll set already holds the first, and all of it is released.
  t.throws(() => binding.watchReadable([l.fd, 987654], () => {}), { code: 'EBADF', errno: -9, syscall: 'epoll_ctl' })
  t.throws(() => binding.unwatchReadable({}), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => binding.unwatchReadable(undefined), { code: 'ERR_INVALID_ARG_TYPE' })
  t.equal(fdCount(), before, 'no fd leaked')
  t.equal(threads(), tasks, 'no thread started')
  binding.close(l.fd)
})
