'use strict'

// The parts of an in-place upgrade that run without a supervisor: the
// addon's execve, clearCloexec, memfdState and waitpid against the real
// kernel, the carried state, the preflight and the protocol rule.
const t = require('tap')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { loadNative } = require('../../dist/lib/common/native')
const { PROTOCOL, protocolAccepted } = require('../../dist/lib/common/messages')
const { STATE_ENV, STATE_VERSION, takeCarriedState, writeState, carriedFds } = require('../../dist/lib/supervisor/upgrade-state')
const { CLI, fdCount } = require('../helpers')

const { binding, reason } = loadNative()
if (binding === null) {
  t.fail(`native addon did not load: ${reason}`)
  process.exit(1)
}

const cloexec = fd => (parseInt(/flags:\s+(\d+)/.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))[1], 8) & 0o2000000) !== 0

t.test('clearCloexec and setCloexec flip FD_CLOEXEC; bad fds fail like Node', async t => {
  const l = binding.createListener('127.0.0.1', 0, 16, false)
  t.ok(cloexec(l.fd), 'listeners are made close-on-exec')
  binding.clearCloexec(l.fd)
  t.notOk(cloexec(l.fd), 'cleared')
  binding.setCloexec(l.fd)
  t.ok(cloexec(l.fd), 'set again')
  binding.close(l.fd)
  t.throws(() => binding.clearCloexec(l.fd), { code: 'EBADF', errno: -9, syscall: 'fcntl' })
  t.throws(() => binding.clearCloexec(-1), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => binding.clearCloexec('3'), { code: 'ERR_INVALID_ARG_TYPE' })
})

t.test('memfdState: the bytes back at offset 0, inheritable; no fd leaked on bad input', async t => {
  const before = fdCount()
  const fd = binding.memfdState(Buffer.from('{"secret":"x"}'))
  t.notOk(cloexec(fd), 'survives execve')
  t.match(fs.readlinkSync(`/proc/self/fd/${fd}`), /^\/memfd:fastify-reuseport-state/, 'an anonymous file, in no file system')
  t.equal(fs.readFileSync(fd, 'utf8'), '{"secret":"x"}')
  fs.closeSync(fd)
  t.throws(() => binding.memfdState('text'), { code: 'ERR_INVALID_ARG_TYPE' })
  t.equal(fdCount(), before, 'no fd left')
})

t.test('waitpid reaps a child libuv did not spawn; other pids fail like Node', async t => {
  t.throws(() => binding.waitpid(1), { code: 'ECHILD', syscall: 'waitpid' }, 'not our child')
  t.throws(() => binding.waitpid(0), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => binding.waitpid('1'), { code: 'ERR_INVALID_ARG_TYPE' })
  const script = `
    const b = require(${JSON.stringify(path.join(__dirname, '..', '..', 'build', 'Release', 'reuseport.node'))})
    const pid = Number(process.argv[1])
    const out = []
    const until = Date.now() + 5000
    const poll = () => {
      const r = b.waitpid(pid)
      if (r === null && Date.now() < until) return setTimeout(poll, 10)
      out.push(r); process.stdout.write(JSON.stringify(out))
    }
    poll()`
  // sh starts sleep in the background, then execs node: node inherits the child (same process), libuv never spawned it.
  const r = spawnSync('sh', ['-c', `sleep 0.2 & exec "${process.execPath}" -e '${script.replace(/'/g, "'\\''")}' $!`], { encoding: 'utf8', timeout: 10000 })
  t.same(JSON.parse(r.stdout), [{ code: 0, signal: null }], `reaped with its exit status: ${r.stderr}`)
})

t.test('execve: arguments checked at the boundary; a failure throws like Node and the process lives on', async t => {
  t.throws(() => binding.execve(1, [], []), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => binding.execve('/bin/true', [], []), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => binding.execve('/bin/true', ['true', 2], []), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => binding.execve('/bin/true', ['true'], ['NOEQUALS']), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => binding.execve('/bin/true', ['tr\0ue'], []), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => binding.execve('/nonexistent/program', ['x'], []), { code: 'ENOENT', errno: -2, syscall: 'execve', message: 'execve ENOENT: no such file or directory /nonexistent/program' })
})

t.test('execve replaces the program, same pid; a cleared fd and the memfd state survive it', async t => {
  const script = `
    const b = require(${JSON.stringify(path.join(__dirname, '..', '..', 'build', 'Release', 'reuseport.node'))})
    const fs = require('node:fs')
    if (process.env.STAGE === 'after') {
      process.stdout.write(JSON.stringify({ pid: process.pid, state: fs.readFileSync(Number(process.env.MEMFD), 'utf8') }))
    } else {
      process.stdout.write(process.pid + '\\n')
      const fd = b.memfdState(Buffer.from('carried'))
      b.clearCloexec(1)
      b.execve(process.execPath, [process.execPath, '-e', process.argv[1]], ['STAGE=after', 'MEMFD=' + fd])
    }`
  const r = spawnSync(process.execPath, ['-e', script, script], { encoding: 'utf8', timeout: 10000 })
  const [first, second] = r.stdout.split('\n')
  t.same(JSON.parse(second), { pid: Number(first), state: 'carried' }, 'same pid, state read back')
})

t.test('the carried state: read once, the variable removed, the memfd closed, its fds close-on-exec again', async t => {
  const l = binding.createListener('127.0.0.1', 0, 16, false)
  binding.clearCloexec(l.fd)
  const state = { version: STATE_VERSION, generation: 1, from: '0.1.0', settings: {}, port: l.port, metricsFd: null, slots: [{ listeners: [{ ...l, address: '127.0.0.1', family: 4, backlog: 16 }], restarts: 0, stalls: 0, replacements: {}, acceptedBefore: 0, handedOffBefore: 0, lastExit: null, worker: { pid: 1, control: -1, stdout: -1, stderr: -1 } }] }
  const before = fdCount()
  const env = { [STATE_ENV]: String(writeState(binding, state)) }
  const read = takeCarriedState(binding, env)
  t.same(read, state)
  t.same(env, {}, 'the variable is gone')
  t.equal(fdCount(), before, 'the memfd is closed')
  t.ok(cloexec(l.fd), 'the listener is close-on-exec again')
  t.same(carriedFds(state), [l.fd])
  t.equal(takeCarriedState(binding, {}), null, 'an ordinary start')
  const future = { [STATE_ENV]: String(writeState(binding, { ...state, version: 99 })) }
  t.throws(() => takeCarriedState(binding, future), /carried state version 99 is not one of 1/)
  binding.close(l.fd)
})

t.test('the protocol rule: our own and the previous version, no other', async t => {
  t.equal(PROTOCOL, 2)
  t.ok(protocolAccepted(2))
  t.ok(protocolAccepted(1))
  t.ok(protocolAccepted(undefined), 'a peer that sends none speaks protocol 1')
  t.notOk(protocolAccepted(3))
  t.notOk(protocolAccepted(0))
  t.ok(protocolAccepted(2, 3), 'a newer side accepts us')
  t.notOk(protocolAccepted(undefined, 3), 'two apart: refused')
})

t.test('--preflight: exit 0 and one JSON line; a state version or protocol it cannot take: exit 1, one line', async t => {
  const ok = spawnSync(process.execPath, [CLI, '--preflight', String(STATE_VERSION), '1,2'], { encoding: 'utf8' })
  t.equal(ok.status, 0, ok.stderr)
  t.match(JSON.parse(ok.stdout), { ok: true, version: require('../../package.json').version, node: process.version })
  const state = spawnSync(process.execPath, [CLI, '--preflight', '99', '2'], { encoding: 'utf8' })
  t.equal(state.status, 1)
  t.equal(state.stderr, 'fastify-reuseport: FST_REUSEPORT_UPGRADE_FAILED: the new code reads state versions 1, not 99\n')
  const proto = spawnSync(process.execPath, [CLI, '--preflight', String(STATE_VERSION), '4'], { encoding: 'utf8' })
  t.equal(proto.status, 1)
  t.match(proto.stderr, /^fastify-reuseport: FST_REUSEPORT_UPGRADE_FAILED: a running worker speaks control protocol 4, this side speaks 2 and accepts 1 to 2;.*\n$/)
  t.equal(proto.stderr.split('\n').length, 2, 'one line')
})

t.test('handle.upgrade() is refused under the cluster balancer with one error, nothing changed', async t => {
  const { start } = require('../../dist/index')
  const pino = require('pino')
  const lines = []
  const logger = pino({ level: 'info' }, { write: l => lines.push(JSON.parse(l)) })
  const handle = await start({ app: path.join(__dirname, '..', 'fixtures', 'app.js'), workers: 1, port: 0, host: '127.0.0.1', balancer: 'cluster', logger })
  t.teardown(() => handle.close())
  await t.rejects(handle.upgrade(), { code: 'FST_REUSEPORT_UPGRADE_FAILED', message: /cluster balancer cannot be upgraded in place/ })
  t.equal(lines.filter(l => /^upgrade: /.test(l.msg)).length, 1, 'one line')
  t.equal(handle.slots()[0].state, 'ready')
})

t.test('a partial line read by the old program is forwarded whole by the new one', async t => {
  const { PassThrough } = require('node:stream')
  const { createLineForwarder } = require('../../dist/lib/supervisor/logs')
  const out = []
  const dest = new PassThrough()
  dest.on('data', d => out.push(String(d)))
  const before = createLineForwarder(dest)
  const pipe = new PassThrough()
  before.add(pipe)
  pipe.write('{"a":1}\n{"b":')
  await new Promise(resolve => setImmediate(resolve))
  const held = before.held(pipe)
  t.equal(String(held), '{"b":', 'held: the start of a line')
  // The new program reads the same pipe on: what comes next completes the line.
  const after = createLineForwarder(dest)
  const same = new PassThrough()
  after.add(same, held)
  same.end('2}\n')
  await after.ended()
  t.same(out.join('').split('\n').filter(Boolean).map(l => JSON.parse(l)), [{ a: 1 }, { b: 2 }], 'every line whole')
})
