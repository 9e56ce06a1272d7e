'use strict'

// Issue 24: no worker outlives its supervisor. SIGTERM and SIGKILL reach the
// supervisor at chosen moments of its workers' boot: just spawned (before the
// app loads), during a slow plugin's registration, listening but not yet
// ready, and during the first requests; then a fastify-cli generated app as
// soon as its first worker serves. After a SIGTERM, no worker may be left once
// the supervisor's process has exited; after a SIGKILL (which it cannot pass
// on), none within -g + 1 s. Real processes, found by a marker in their
// environment.
const t = require('tap')
const { execFileSync } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { request } = require('undici')
const { FIXTURES, ROOT, childrenOf, freePort, processesWith, sleep, startCli, waitFor } = require('../helpers')

const SLOW_APP = path.join(FIXTURES, 'slow-boot.js')
const GRACE = 1000
const ROUNDS = Number(process.env.ORPHAN_ROUNDS ?? 5)

const fileEnds = (dir, suffix) => () => fs.readdirSync(dir).some(f => f.endsWith(suffix))
const firstServed = port => async () => {
  try {
    const res = await request(`http://127.0.0.1:${port}/`, { reset: true, headersTimeout: 1000 })
    await res.body.dump()
    return res.statusCode === 200
  } catch { return false }
}

/** Starts a supervisor, signals it at `moment`, and returns the workers left behind (none, hopefully). */
async function run (moment, signal, app = SLOW_APP, extra = []) {
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-orphans-'))
  const marker = `reuseport-orphans-${crypto.randomUUID()}`
  const sup = await startCli(['-w', '2', '-g', String(GRACE), '-a', '127.0.0.1', '-p', String(port), ...extra, app], {
    env: { REUSEPORT_TEST_MARKER: marker, ORPHAN_DIR: dir }, ready: false
  })
  const pending = []
  try {
    const what = `${moment} (${sup.stderr})`
    if (moment === 'spawned') await waitFor(() => childrenOf(sup.child.pid).length > 0, { interval: 2, what })
    else if (moment === 'plugin') await waitFor(fileEnds(dir, '.plugin'), { interval: 5, what })
    else if (moment === 'listening') await waitFor(fileEnds(dir, '.listening'), { interval: 5, what })
    else if (moment === 'first served') await waitFor(firstServed(port), { interval: 20, what })
    else if (moment === 'requests') {
      await waitFor(() => sup.lines.some(l => typeof l.msg === 'string' && l.msg.startsWith('safety nets')), { what })
      for (let i = 0; i < 4; i++) {
        pending.push(request(`http://127.0.0.1:${port}/slow`, { reset: true }).then(r => r.body.dump().then(() => r.statusCode), e => e.code))
      }
      await sleep(50)
    }
    const workers = childrenOf(sup.child.pid)
    const signaledAt = Date.now()
    sup.child.kill(signal)
    const exit = await sup.exited
    let left = processesWith(marker)
    if (signal === 'SIGKILL') {
      // It cannot pass a SIGKILL on: its workers must see it gone by themselves.
      while (left.length > 0 && Date.now() < signaledAt + GRACE + 1000) {
        await sleep(20)
        left = processesWith(marker)
      }
    }
    return { exit, left, workers, answers: await Promise.all(pending), stderr: sup.stderr }
  } finally {
    for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
    if (sup.child.exitCode === null && sup.child.signalCode === null) sup.child.kill('SIGKILL')
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const MOMENTS = ['spawned', 'plugin', 'listening', 'requests']

t.test(`SIGTERM and SIGKILL at ${MOMENTS.length} moments of the boot, ${ROUNDS} rounds: no worker left`, async t => {
  const failures = []
  let runs = 0
  for (let round = 0; round < ROUNDS; round++) {
    for (const moment of MOMENTS) {
      for (const signal of ['SIGTERM', 'SIGKILL']) {
        const r = await run(moment, signal)
        runs++
        if (r.left.length > 0) failures.push(`${signal} at ${moment}: ${r.left.length} of ${r.workers.length} workers left`)
        if (signal === 'SIGTERM') {
          if (r.exit.code !== 0) failures.push(`${signal} at ${moment}: exit ${JSON.stringify(r.exit)}: ${r.stderr.trim()}`)
          // A graceful shutdown answers the requests it had.
          if (r.answers.some(a => a !== 200)) failures.push(`${signal} at ${moment}: answers ${r.answers}`)
        }
      }
    }
  }
  t.same(failures, [], `${runs} runs, none left a worker behind`)
})

t.test('a fastify-cli generated app, signalled as soon as its first worker serves', async t => {
  const base = path.join(ROOT, '.tmp')
  fs.mkdirSync(base, { recursive: true })
  const dir = fs.mkdtempSync(path.join(base, 'orphans-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'fastify-cli', 'cli.js'), 'generate', 'app'], { cwd: dir, stdio: 'ignore' })
  const app = path.join(dir, 'app', 'app.js')
  const failures = []
  for (let i = 0; i < 5; i++) {
    for (const signal of ['SIGTERM', 'SIGKILL']) {
      const r = await run('first served', signal, app, ['-o'])
      if (r.left.length > 0) failures.push(`${signal}: ${r.left.length} of ${r.workers.length} workers left`)
      if (signal === 'SIGTERM' && r.exit.code !== 0) failures.push(`${signal}: exit ${JSON.stringify(r.exit)}: ${r.stderr.trim()}`)
    }
  }
  t.same(failures, [], '10 runs, none left a worker behind')
})
