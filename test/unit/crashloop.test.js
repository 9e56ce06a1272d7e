'use strict'

// Issue 17, part 1: the crash-loop exit counts what served, not what became
// ready. Every worker throws 300 ms after it is ready; with
// --crash-loop-timeout 2000 the supervisor exits 1 within 2000 ms + 1 s of its
// first worker's death, and leaves no process behind.
const t = require('tap')
const crypto = require('node:crypto')
const path = require('node:path')
const { FIXTURES, freePort, processesWith, sleep, startCli } = require('../helpers')

t.test('an app throwing 300 ms after ready: exit 1 within --crash-loop-timeout + 1 s', async t => {
  const port = await freePort()
  const marker = `reuseport-crashloop-${crypto.randomUUID()}`
  const sup = await startCli(['-w', '2', '-a', '127.0.0.1', '-p', String(port), '-g', '1000', '--crash-loop-timeout', '2000', path.join(FIXTURES, 'throws-after-ready.js')],
    { env: { REUSEPORT_TEST_MARKER: marker } })
  t.teardown(async () => {
    await sup.stop('SIGKILL')
    for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
  })
  // Ready now: the first deaths come 300 ms later.
  const readyAt = Date.now()
  const limit = 300 + 2000 + 1000
  const exit = await Promise.race([sup.exited, sleep(limit + 10000).then(() => 'still running')])
  const after = Date.now() - readyAt
  t.same(exit, { code: 1, signal: null }, 'exit code 1')
  t.ok(after <= limit, `exited ${after} ms after ready (bound ${limit} ms)`)
  t.match(sup.stderr, /FST_REUSEPORT_CRASH_LOOP/, 'says why')
  await sleep(200)
  t.same(processesWith(marker), [], 'no process left')
})
