'use strict'

// Issue 17.4: a supervisor started by the real npx follows it. npx (`npm
// exec`) runs our bin through `sh -c`; a TERM (or a HUP, which npm does not
// pass on) to npx must leave no process behind within -g + 1 s (+ 1 s for
// the HUP: npm dies of it and leaves its shell waiting, which our watch of
// npm notices within a second).
const t = require('tap')
const { spawn } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { ROOT, FIXTURES, freePort, processesWith, sleep, waitFor } = require('../helpers')

const NPX = path.join(path.dirname(process.execPath), 'npx')
const GRACE = 1000

/** A project with fastify-reuseport as a local dependency: `npx --no-install` runs its bin, installing nothing. */
function project (t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-npx-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'npx-probe', private: true, dependencies: { 'fastify-reuseport': '*' } }))
  fs.mkdirSync(path.join(dir, 'node_modules', '.bin'), { recursive: true })
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'fastify-reuseport'))
  fs.symlinkSync('../fastify-reuseport/dist/lib/cli.js', path.join(dir, 'node_modules', '.bin', 'fastify-reuseport'))
  return dir
}

for (const [signal, bound] of [['SIGTERM', GRACE + 1000], ['SIGHUP', GRACE + 2000]]) {
  t.test(`${signal} to npx leaves no process behind within ${bound} ms`, { skip: !fs.existsSync(NPX) && `no npx beside ${process.execPath}` }, async t => {
    const cwd = project(t)
    const port = await freePort()
    const marker = `reuseport-npx-${crypto.randomUUID()}`
    const npx = spawn(NPX, ['--no-install', 'fastify-reuseport', 'start', '-w', '2', '-g', String(GRACE), '-a', '127.0.0.1', '-p', String(port), path.join(FIXTURES, 'app.js')],
      { cwd, env: { ...process.env, REUSEPORT_TEST_MARKER: marker }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    npx.stdout.on('data', d => { out += d })
    npx.stderr.on('data', d => { out += d })
    t.teardown(() => { for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {} })
    await waitFor(() => out.includes('safety nets'), { timeout: 30000, what: `the supervisor under npx to serve: ${out}` })
    t.match(out, /started by npx: shutting down when it exits/, 'it knows npx started it')
    const before = processesWith(marker)
    t.ok(before.length >= 4, `npx, sh, the supervisor and 2 workers run: ${before.length}`)
    const sentAt = Date.now()
    npx.kill(signal)
    let left = before
    while (left.length > 0 && Date.now() - sentAt < bound) {
      await sleep(25)
      left = processesWith(marker)
    }
    t.same(left, [], `nothing left after ${Date.now() - sentAt} ms`)
  })
}
