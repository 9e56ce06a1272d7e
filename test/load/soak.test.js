'use strict'

// A short soak (bench/soak.mjs --smoke: 20 s of wrk load while reloads, kill
// -9s and scale changes follow each other): the supervisor's fds and RSS come
// back to where they were, no worker is left unmanaged, and no request fails
// beyond the connections the killed workers held.
const t = require('tap')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { ROOT, hasCommand } = require('../helpers')

t.test('bench/soak.mjs --smoke', { skip: !hasCommand('wrk') && 'wrk is not installed (Debian package wrk)' }, async t => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-soak-'))
  t.teardown(() => fs.rmSync(out, { recursive: true, force: true }))
  execFileSync(process.execPath, [path.join(ROOT, 'bench', 'soak.mjs'), '--smoke', '--out', out], { stdio: 'ignore', timeout: 240000 })
  const s = JSON.parse(fs.readFileSync(path.join(out, 'soak.json'), 'utf8'))
  t.ok(s.actions.reload >= 1 && s.actions.kill >= 2 && s.actions.scaleUp >= 1 && s.actions.scaleDown >= 1, `every kind of action ran: ${JSON.stringify(s.actions)}`)
  t.ok(s.requests > 1000, `real load: ${s.requests} requests`)
  t.ok(s.failed.total <= s.killedConnections, `${s.failed.total} failed, no more than the ${s.killedConnections} connections the killed workers held (${JSON.stringify(s.errors)})`)
  const { fdsBefore, fdsAfter, rssMbBefore, rssMbAfter } = s.supervisor
  t.ok(Math.abs(fdsAfter - fdsBefore) <= 2, `supervisor fds back to baseline: ${fdsBefore} -> ${fdsAfter}`)
  t.ok(rssMbAfter - rssMbBefore <= 10, `supervisor RSS back to baseline: ${rssMbBefore} -> ${rssMbAfter} MB`)
  t.equal(s.workersAfter, s.workers, `${s.workers} workers at the end, as at the start`)
  t.same(s.unmanaged, [], 'every worker process is one /metrics reports')
  t.ok(s.timeline.length > 40, 'fds and RSS were sampled throughout')
  t.equal(s.respawnMs.length, s.actions.kill, `every killed worker was replaced: ${s.respawnMs.join(', ')} ms from kill to ready`)
})
