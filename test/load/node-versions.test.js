'use strict'

// A rolling restart under load on every supported Node line (the rest of
// each line's checks: test/unit/node-versions.test.js).
const t = require('tap')
const crypto = require('node:crypto')
const path = require('node:path')
const { FIXTURES, NODE_MAJORS, alive, freePort, load, nodeBinary, onNode, prebuildsMissing, processesWith, sleep, startCli, waitFor } = require('../helpers')

const ENV = prebuildsMissing() === null ? { PREBUILDS_ONLY: '1' } : {}

for (const major of NODE_MAJORS) {
  const { bin, why } = nodeBinary(major)
  t.test(`Node ${major}: a rolling restart under load fails no request`, { skip: why ?? false }, async t => {
    const port = await freePort()
    const marker = `reuseport-test-${crypto.randomUUID()}`
    const sup = await startCli(['-w', '2', '-a', '127.0.0.1', '-p', String(port), path.join(FIXTURES, 'app.js')],
      { wrap: onNode(bin), env: { ...ENV, REUSEPORT_TEST_MARKER: marker } })
    t.teardown(async () => {
      await sup.stop('SIGKILL')
      for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
    })
    const before = sup.workerPids()
    const url = `http://127.0.0.1:${port}`
    const loads = Promise.all([
      load({ url, durationMs: 4000, connections: 4, keepAlive: true }),
      load({ url, durationMs: 4000, connections: 4, keepAlive: false })
    ])
    await sleep(1000)
    sup.child.kill('SIGHUP')
    await waitFor(() => sup.lines.some(l => l.msg === 'reload: all 2 slots replaced'), { timeout: 15000, what: 'the reload' })
    const [keepAlive, fresh] = await loads
    t.ok(keepAlive.requests > 100 && fresh.requests > 50, `real load: ${keepAlive.requests} keep-alive and ${fresh.requests} new-connection requests`)
    t.same({ failed: keepAlive.failed, errors: keepAlive.errors }, { failed: 0, errors: {} }, 'keep-alive clients: 0 failed')
    t.same({ failed: fresh.failed, errors: fresh.errors }, { failed: 0, errors: {} }, 'new-connection clients: 0 failed')
    const after = sup.workerPids()
    t.equal(after.length, 2, 'two workers')
    t.notOk(after.some(pid => before.includes(pid)), 'every worker was replaced')
    for (const pid of before) t.notOk(alive(pid), `old worker ${pid} exited`)
    t.same(await sup.stop('SIGTERM'), { code: 0, signal: null }, 'graceful exit')
  })
}
