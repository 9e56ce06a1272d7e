'use strict'

// A worker that fails to boot: the CLI's one error line, then what Node
// would print for the error (a SyntaxError's file:line and caret, a thrown
// error's stack), nothing on stdout; the same text in the error's cause.
const t = require('tap')
const { spawn } = require('node:child_process')
const crypto = require('node:crypto')
const path = require('node:path')
const { CLI, FIXTURES, processesWith, sleep } = require('../helpers')
const { start } = require('../..')

function run (args) {
  const marker = `reuseport-test-${crypto.randomUUID()}`
  const child = spawn(process.execPath, [CLI, 'start', '-a', '127.0.0.1', '-p', '0', '-w', '1', ...args], {
    env: { ...process.env, REUSEPORT_TEST_MARKER: marker },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', d => { stdout += d })
  child.stderr.on('data', d => { stderr += d })
  return new Promise(resolve => child.once('close', code => resolve({ code, stdout, stderr, marker })))
}

const bad = path.join(FIXTURES, 'bad-syntax')
const cases = [
  ['a CommonJS syntax error', path.join(bad, 'app.js'), new RegExp(`^${bad}/app\\.js:2\n.*\\(a b\\) => 1.*\n {50,}\\^\n\nSyntaxError: Unexpected identifier 'b'\n    at `)],
  ['an ES module syntax error', path.join(bad, 'app.mjs'), new RegExp(`^file://${bad}/app\\.mjs:2\n  fastify\\.get\\('/', \\(a b\\) => 1\\)\n +\\^\n\nSyntaxError: Unexpected identifier 'b'\n    at `)],
  ['a syntax error in a module the app imports', path.join(bad, 'imports-bad.mjs'), new RegExp(`^file://${bad}/app\\.mjs:2\n`)],
  ['a thrown error', path.join(FIXTURES, 'throws.js'), new RegExp(`^Error: boom: this app fails to load\n    at Object\\.<anonymous> \\(${FIXTURES}/throws\\.js:2:7\\)\n`)]
]

for (const [name, file, after] of cases) {
  t.test(name, async t => {
    const r = await run([file])
    t.equal(r.code, 1)
    t.equal(r.stdout, '', 'nothing on stdout')
    const [line, ...rest] = r.stderr.split('\n')
    t.match(line, /^fastify-reuseport: FST_REUSEPORT_WORKER_FAILED: Worker for slot 1 failed to start: .* \((SyntaxError|Error)\)$/, 'one error line')
    t.match(rest.join('\n'), after, 'then Node\'s own text for the error')
    await sleep(100)
    t.same(processesWith(r.marker), [], 'no process left behind')
  })
}

t.test('start() rejects with the worker\'s error as the cause', async t => {
  const err = await start({ app: path.join(bad, 'app.mjs'), port: 0, host: '127.0.0.1', workers: 1, logLevel: 'silent' }).then(() => null, e => e)
  t.equal(err?.code, 'FST_REUSEPORT_WORKER_FAILED')
  t.equal(err.cause?.name, 'SyntaxError')
  t.match(err.cause.stack, new RegExp(`^file://${bad}/app\\.mjs:2\n`))
})
