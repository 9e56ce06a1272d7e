'use strict'

// A bounded chaos run (bench/chaos.mjs --smoke) against fastify-reuseport:
// restarts and scale changes fail nothing; crashes fail at most what the
// killed worker held.
const t = require('tap')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { ROOT, hasCommand } = require('../helpers')

t.test('bench/chaos.mjs --smoke --modes fastify-reuseport', { skip: !hasCommand('wrk') && 'wrk is not installed (Debian package wrk)' }, async t => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-chaos-'))
  t.teardown(() => fs.rmSync(out, { recursive: true, force: true }))
  execFileSync(process.execPath, [path.join(ROOT, 'bench', 'chaos.mjs'), '--smoke', '--modes', 'fastify-reuseport', '--out', out], { stdio: 'ignore', timeout: 240000 })
  const { rows, h2 } = JSON.parse(fs.readFileSync(path.join(out, 'chaos.json'), 'utf8'))
  t.ok(h2.length > 0, 'the HTTP/2 scenario ran')
  for (const r of h2) t.equal(r.failed, 0, `h2 restarts: 0 of ${r.requests} failed (${r.retried} refused streams retried)`)
  t.same([...new Set(rows.map(r => r.scenario))], ['restarts', 'crashes', 'scale'])
  for (const r of rows) {
    t.ok(r.requests > 100, `${r.scenario}, ${r.client}: ${r.requests} requests`)
    if (r.scenario === 'crashes') {
      t.ok(r.failed <= r.killedConnections, `${r.client}: ${r.failed} failed, no more than the ${r.killedConnections} connections the killed worker held`)
    } else {
      t.equal(r.failed, 0, `${r.scenario}, ${r.client}: 0 failed (${JSON.stringify({ non2xx: r.non2xx, connect: r.connect, read: r.read, write: r.write, timeout: r.timeout })})`)
    }
  }
  t.match(fs.readFileSync(path.join(out, 'chaos.md'), 'utf8'), /\| scenario \| mode \| client \| requests \|/)
})
