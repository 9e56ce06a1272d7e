'use strict'

// The upgrade's rules in-process, on the supervisor fakes (test/supervisor-fakes.js):
// one at a time, a failed preflight or execve changes nothing, a shutdown
// wins. The real addon and kernel run the fd work; execve itself is made to
// fail here (its success is test/load/upgrade.test.js's).
const t = require('tap')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { fakeSupervisor } = require('../supervisor-fakes')
const { loadNative } = require('../../dist/lib/common/native')
const { CLI, fdCount } = require('../helpers')

const { binding } = loadNative()
const cloexec = fd => (parseInt(/flags:\s+(\d+)/.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))[1], 8) & 0o2000000) !== 0
const upgradeLines = f => f.lines.filter(l => /^upgrade: /.test(l.msg)).map(l => l.msg)

/** A supervisor on fakes whose slot fds are real listeners, as if started by `script`. */
async function opened (t, script = CLI) {
  const f = fakeSupervisor({})
  const real = []
  f.sockets.open = () => {
    const l = binding.createListener('127.0.0.1', 0, 16, false)
    real.push(l.fd)
    return [{ fd: l.fd, address: '127.0.0.1', family: 4, port: l.port, backlog: 16 }]
  }
  await f.supervisor.open(2)
  const argv1 = process.argv[1]
  process.argv[1] = script
  t.teardown(() => {
    process.argv[1] = argv1
    f.supervisor.removeAllListeners()
    for (const fd of real) try { binding.close(fd) } catch {}
  })
  return { ...f, real }
}

t.test('a failed preflight (a syntax error in the new code) changes nothing; one line', async t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'frp-bad-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.writeFileSync(path.join(dir, 'cli.js'), 'this is not javascript(\n')
  const f = await opened(t, path.join(dir, 'cli.js'))
  const before = f.supervisor.snapshot()
  await t.rejects(f.supervisor.upgrade(), { code: 'FST_REUSEPORT_UPGRADE_FAILED', message: /the new code failed its preflight \(exit 1\): \S+cli\.js:1: SyntaxError: Unexpected identifier/ })
  t.same(upgradeLines(f).length, 2, 'the check, then one line saying why')
  t.same(f.supervisor.snapshot(), before, 'nothing changed')
  t.ok(f.real.every(cloexec), 'the slot fds are still close-on-exec')
})

t.test('a second upgrade while one runs is refused at once, with one line', async t => {
  const f = await opened(t, '/nonexistent/cli.js')
  const first = f.supervisor.upgrade()
  await t.rejects(f.supervisor.upgrade(), { code: 'FST_REUSEPORT_UPGRADE_FAILED', message: /an upgrade is already in progress; this request is refused/ })
  await t.rejects(first, { message: /preflight .*Cannot find module/ })
  await t.rejects(f.supervisor.upgrade(), { message: /preflight/ }, 'and allowed again once it ended')
})

t.test('execve failing: the fds are close-on-exec again, the memfd closed, the supervisor unchanged', async t => {
  const f = await opened(t)
  const execve = binding.execve
  t.teardown(() => { binding.execve = execve })
  let seen = null
  binding.execve = (file, argv, env) => {
    seen = { file, argv, env, open: f.real.map(fd => !cloexec(fd)) }
    return execve('/nonexistent/node', argv, env)
  }
  const fds = fdCount()
  await t.rejects(f.supervisor.upgrade(), { code: 'FST_REUSEPORT_UPGRADE_FAILED', message: /execve failed, nothing changed: execve ENOENT/ })
  t.same(seen.open, [true, true], 'the slot fds were inheritable at the call')
  t.same(seen.argv, [process.execPath, ...process.execArgv, CLI, ...process.argv.slice(2)], 'this Node, its options, the CLI script, the same arguments')
  const stateVar = seen.env.find(e => e.startsWith('FASTIFY_REUSEPORT_UPGRADE_FD='))
  t.ok(stateVar, 'the state goes by fd number')
  t.notOk(seen.env.some(e => e.includes('"slots"')), 'and nothing of it is in the environment')
  t.ok(f.real.every(cloexec), 'close-on-exec again')
  t.equal(fdCount(), fds, 'the memfd is closed')
  t.same(f.supervisor.slots().map(s => s.state), ['ready', 'ready'])
})

t.test('a shutdown during the preflight wins: the upgrade ends, nothing is exec\'d', async t => {
  const f = await opened(t)
  const pending = f.supervisor.upgrade()
  const closing = f.supervisor.close()
  for (const p of f.spawned) if (!p.gone) p.exit(0, null)
  await closing
  await t.rejects(pending, { message: /shutting down/ })
})
