'use strict'

// Issue 17.3, a graceful crash: bench/crash.mjs --smoke runs wrk (16
// connections, keep-alive, then a new connection per request) against 2
// workers while one, then three uncaught exceptions are thrown from a timer,
// 800 ms apart. Nothing fails, and each error is logged once with its stack.
const t = require('tap')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { ROOT, hasCommand } = require('../helpers')

t.test('bench/crash.mjs --smoke: uncaught exceptions fail 0 requests', { skip: !hasCommand('wrk') && 'wrk is not installed (Debian package wrk)' }, async t => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-crash-'))
  t.teardown(() => fs.rmSync(out, { recursive: true, force: true }))
  const modes = process.env.CRASH_MODES ?? 'fastify-reuseport'
  execFileSync(process.execPath, [path.join(ROOT, 'bench', 'crash.mjs'), '--smoke', '--modes', modes, '--out', out], { stdio: 'ignore', timeout: 120000 })
  const rows = JSON.parse(fs.readFileSync(path.join(out, 'crash-smoke.json'), 'utf8'))
  t.equal(rows.length, 4, 'keep-alive and new connections, 1 and 3 crashes')
  for (const r of rows) {
    t.ok(r.requests > 100, `${r.scenario}: ${r.requests} requests`)
    t.equal(r.failed, 0, `${r.scenario}: 0 failed (${JSON.stringify({ non2xx: r.non2xx, ...r.errors })})`)
    t.same(r.crashAnswers, Array(r.crashes).fill(200), `${r.scenario}: each crash request answered`)
    t.equal(r.stacksLogged, r.crashes, `${r.scenario}: each error logged once, with its stack`)
    t.equal(r.workersReplaced, r.crashes, `${r.scenario}: each crash replaced its worker`)
  }
  const md = fs.readFileSync(path.join(out, 'crash-smoke.md'), 'utf8')
  t.match(md, /\| keep-alive, 3 crashes \| 0 of \d+ \(3\) \|/, 'the markdown table: failed of requests, (workers replaced)')
})
