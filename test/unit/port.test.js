'use strict'

// Issue 17.2: one service per port unless asked. A second
// `fastify-reuseport start` on a port another process listens on (a reuseport
// group of an earlier start, or a plain listener) fails with one line naming
// EADDRINUSE and the port, exits 1, and leaves nothing behind; with --join it
// shares the port.
const t = require('tap')
const { spawn } = require('node:child_process')
const crypto = require('node:crypto')
const net = require('node:net')
const path = require('node:path')
const { request } = require('undici')
const { CLI, FIXTURES, freePort, processesWith, sleep, startCli } = require('../helpers')

const APP = path.join(FIXTURES, 'app.js')

function runCli (args, env) {
  return new Promise(resolve => {
    const child = spawn(process.execPath, [CLI, 'start', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', d => { stdout += d })
    child.stderr.on('data', d => { stderr += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), 15000)
    child.once('exit', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }) })
  })
}

async function refused (t, port, what) {
  const marker = `reuseport-port-${crypto.randomUUID()}`
  const r = await runCli(['-w', '2', '-a', '127.0.0.1', '-p', String(port), APP], { REUSEPORT_TEST_MARKER: marker })
  t.equal(r.code, 1, `${what}: exit 1`)
  const lines = r.stderr.trim().split('\n')
  t.equal(lines.length, 1, `${what}: one line: ${r.stderr.trim()}`)
  t.match(lines[0], new RegExp(`EADDRINUSE.*127\\.0\\.0\\.1:${port}`), `${what}: names EADDRINUSE and the port`)
  t.equal(r.stdout, '', `${what}: nothing on stdout (no worker started)`)
  await sleep(100)
  t.same(processesWith(marker), [], `${what}: no process left`)
}

t.test('a second start on a busy port is refused; --join shares it', async t => {
  const port = await freePort()
  const first = await startCli(['-w', '1', '-a', '127.0.0.1', '-p', String(port), APP])
  t.teardown(() => first.stop('SIGKILL'))
  await refused(t, port, 'a reuseport group listens')

  const marker = `reuseport-port-${crypto.randomUUID()}`
  const second = await startCli(['-w', '1', '--join', '-a', '127.0.0.1', '-p', String(port), APP], { env: { REUSEPORT_TEST_MARKER: marker } })
  t.teardown(() => second.stop('SIGKILL'))
  const [secondWorker] = processesWith(marker).filter(pid => pid !== second.child.pid)
  const pids = new Set()
  for (let i = 0; i < 40 && !pids.has(secondWorker); i++) {
    const res = await request(`http://127.0.0.1:${port}/`, { reset: true })
    pids.add((await res.body.json()).pid)
  }
  t.ok(pids.has(secondWorker), '--join: the second one serves on the same port')
  t.same(await second.stop('SIGTERM'), { code: 0, signal: null })
  t.same(await first.stop('SIGTERM'), { code: 0, signal: null })
})

t.test('a plain listener (no SO_REUSEPORT) on the port: refused too', async t => {
  const server = net.createServer()
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  await refused(t, server.address().port, 'a plain listener')
})
