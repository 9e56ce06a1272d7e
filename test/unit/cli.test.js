'use strict'

// Bad input to the CLI: one line on stderr with a code, a non-zero exit, and
// no process left behind. Signals and load are in test/load/.
const t = require('tap')
const { spawn } = require('node:child_process')
const crypto = require('node:crypto')
const net = require('node:net')
const path = require('node:path')
const { CLI, FIXTURES, processesWith, sleep } = require('../helpers')

function run (args, env = {}) {
  const marker = `reuseport-test-${crypto.randomUUID()}`
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, FASTIFY_ADDRESS: '127.0.0.1', REUSEPORT_TEST_MARKER: marker, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', d => { stdout += d })
  child.stderr.on('data', d => { stderr += d })
  return new Promise(resolve => child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr, marker })))
}

async function assertNoOrphans (t, marker) {
  await sleep(100)
  t.same(processesWith(marker), [], 'no process left behind')
}

const app = path.join(FIXTURES, 'app.js')

const cases = [
  ['an unknown flag', ['start', '--nope', app], 2, /^fastify-reuseport: FST_REUSEPORT_INVALID_ARGUMENT: Unknown option '--nope'\n$/],
  ['a port out of range', ['start', '-p', '99999', app], 2, /FST_REUSEPORT_INVALID_ARGUMENT: --port must be an integer from 0 to 65535, received '99999'/],
  ['a port that is not a number', ['start', '--port', 'http', app], 2, /FST_REUSEPORT_INVALID_ARGUMENT: --port must be an integer >= 0, received 'http'/],
  ['a bad port from PORT', ['start', app], 2, /--port must be an integer >= 0, received 'x1'/, { PORT: 'x1' }],
  ['zero workers', ['start', '-w', '0', app], 2, /FST_REUSEPORT_INVALID_ARGUMENT: --workers must be an integer >= 1, received '0'/],
  ['a worker count that is not a number', ['start', '--workers', 'two', app], 2, /--workers must be an integer >= 1 or auto, received 'two': -w is --workers/],
  ['a bad log level', ['start', '-l', 'loud', app], 2, /--log-level must be one of .*received 'loud'/],
  // fastify-cli's -w is --watch: each way it shows up names the difference.
  ['-w with no value (fastify-cli --watch habit)', ['start', app, '-w'], 2, /^fastify-reuseport: FST_REUSEPORT_INVALID_ARGUMENT: Option '-w, --workers <value>' argument missing: -w is --workers <n\|auto> here; fastify-cli's -w\/--watch is not supported \(send SIGHUP to reload the app\)\n$/],
  ['-w followed by another flag (ambiguous)', ['start', '-w', '-l', 'info', app], 2, /Option '-w' argument is ambiguous: -w is --workers <n\|auto> here; fastify-cli's -w\/--watch is not supported/],
  ['-w before the app file', ['start', '-w', app], 2, /-w took '.*app\.js' as the worker count and no app file is left: -w is --workers <n\|auto> here; fastify-cli's -w\/--watch is not supported/],
  ['--watch', ['start', '--watch', app], 2, /Unknown option '--watch': -w is --workers <n\|auto> here; fastify-cli's -w\/--watch is not supported/],
  ['no app file', ['start'], 2, /FST_REUSEPORT_INVALID_ARGUMENT: missing the app file/],
  ['no command', [], 2, /FST_REUSEPORT_INVALID_ARGUMENT: missing command/],
  ['an unknown command', ['serve', app], 2, /FST_REUSEPORT_INVALID_ARGUMENT: unknown command 'serve'/],
  ['a missing app file', ['start', '-p', '0', 'does-not-exist.js'], 1, /FST_REUSEPORT_APP_NOT_FOUND: App file .*does-not-exist\.js does not exist/],
  ['an app that is never ready', ['start', '-p', '0', '-w', '2', '--ready-timeout', '500', path.join(FIXTURES, 'hangs.js')], 1, /^fastify-reuseport: FST_REUSEPORT_READY_TIMEOUT: Worker for slot \d was not ready within 500 ms\n$/],
  ['a malformed --max-memory', ['start', '--max-memory', 'lots', app], 2, /FST_REUSEPORT_INVALID_ARGUMENT: --max-memory must be a size such as 512M or 1G, received 'lots'/],
  ['an unknown --balancer', ['start', '--balancer', 'nginx', app], 2, /FST_REUSEPORT_INVALID_ARGUMENT: --balancer must be one of reuseport, cluster, received 'nginx'/],
  ['a bad FASTIFY_WORKER_TIMEOUT', ['start', app], 2, /--worker-timeout must be an integer >= 0, received '30s'/, { FASTIFY_WORKER_TIMEOUT: '30s' }],
  ['an app that exports no plugin', ['start', '-p', '0', '-w', '1', path.join(FIXTURES, 'not-a-plugin.js')], 1, /FST_REUSEPORT_WORKER_FAILED: .*must export a Fastify plugin function, it exports a value of type object \(FST_REUSEPORT_APP_INVALID\)/]
]

for (const [name, args, code, stderr, env] of cases) {
  t.test(name, async t => {
    const r = await run(args, env)
    t.equal(r.code, code, `exit code ${code}`)
    t.match(r.stderr, stderr)
    t.equal(r.stderr.trim().split('\n').length, 1, `one line on stderr: ${r.stderr}`)
    t.equal(r.stdout, '', 'nothing on stdout')
    await assertNoOrphans(t, r.marker)
  })
}

t.test('a crash loop: every worker dies soon after starting; the supervisor exits 1 with one line', async t => {
  const started = Date.now()
  const r = await run(['start', '-p', '0', '-w', '2', '--crash-loop-timeout', '1500', path.join(FIXTURES, 'crashes.js')])
  t.equal(r.code, 1, 'exit code 1, for the restart policy')
  t.match(r.stderr, /^fastify-reuseport: FST_REUSEPORT_CRASH_LOOP: No worker has served for 1500 ms: every slot keeps failing \(last: (code 1|uncaught Error)\); exiting so that the restart policy takes over$/m)
  t.equal(r.stderr.split('\n').filter(l => l.startsWith('fastify-reuseport:')).length, 1, 'one line of ours')
  const exits = r.stdout.split('\n').filter(l => /(exited with code 1|crashed, answering what it has for up to \d+ ms): a bug that kills every worker; respawning/.test(l))
  t.ok(exits.length >= 2, `the supervisor logs each crash with its error (${exits.length})`)
  t.ok(Date.now() - started < 15000, 'gives up in bounded time')
  await assertNoOrphans(t, r.marker)
})

t.test('a port held by an ordinary socket: EADDRINUSE, at once', async t => {
  const plain = net.createServer()
  await new Promise(resolve => plain.listen(0, '127.0.0.1', resolve))
  const { port } = plain.address()
  const started = Date.now()
  const r = await run(['start', '-p', String(port), '-w', '2', app])
  plain.close()
  t.equal(r.code, 1)
  t.equal(r.stderr.trim(), `fastify-reuseport: listen EADDRINUSE: address already in use 127.0.0.1:${port} (another process listens on it; --join shares it)`)
  t.equal(r.stdout, '', 'nothing on stdout')
  t.ok(Date.now() - started < 5000, 'fails before starting any worker')
  await assertNoOrphans(t, r.marker)
})

t.test('--help documents every flag of the settings table, with its variables', async t => {
  const { TABLE, envNames } = require('../../dist/lib/supervisor/settings')
  const r = await run(['start', '--help'])
  t.equal(r.code, 0)
  const flags = TABLE.filter(s => s.flag !== null)
  t.ok(flags.length >= 25, `${flags.length} flags`)
  for (const s of flags) {
    t.match(r.stdout, new RegExp(`${s.short ? `-${s.short}, ` : ''}--${s.flag}\\b`), `--${s.flag}`)
    for (const e of envNames(s)) t.match(r.stdout, e)
  }
  for (const signal of ['SIGHUP', 'SIGTERM', 'SIGTTIN', 'SIGTTOU']) t.match(r.stdout, signal)
})

t.test('every flag is read from its FASTIFY_* variable too, and a flag wins over it', async t => {
  const { parseCli } = require('../../dist/lib/supervisor/flags')
  const env = { FASTIFY_WORKERS: '3', FASTIFY_STALL_TIMEOUT: '250', FASTIFY_BALANCE: 'off', FASTIFY_MAX_MEMORY: '1G', FASTIFY_OPTIONS: 'true', FASTIFY_REQUIRE: './a.js' }
  const c = parseCli(['start', '--stall-timeout', '100', 'app.js'], env)
  t.match(c.start, { workers: 3, stallTimeout: 100, balance: false, maxMemory: 1024 ** 3, options: true, preload: ['--require', './a.js'] })
  t.equal(c.start.logLevel, 'fatal', 'the workers log at fatal unless -l says otherwise')
  t.equal(c.supervisorLogLevel, 'info', 'the supervisor at info')
})

t.test('--version and -v print the version', async t => {
  const { version } = require('../../package.json')
  for (const flag of ['--version', '-v']) {
    const r = await run([flag])
    t.equal(r.code, 0, `${flag} exits 0`)
    t.equal(r.stdout, `${version}\n`, `${flag} prints ${version}`)
    t.equal(r.stderr, '')
  }
  const help = await run(['--help'])
  t.match(help.stdout, /-v, --version/, '--help lists it')
  t.match(help.stdout, /fastify-reuseport build/, 'and the build command')
})
