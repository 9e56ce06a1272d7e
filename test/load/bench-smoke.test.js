'use strict'

// A short run of the benchmark harness: it must produce well-formed results.
// The goals are measured by `npm run bench`, not asserted here.
const t = require('tap')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { ROOT, hasCommand } = require('../helpers')

t.test('bench/run.mjs --smoke', { skip: !hasCommand('wrk') && 'wrk is not installed (Debian package wrk)' }, async t => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-bench-'))
  t.teardown(() => fs.rmSync(out, { recursive: true, force: true }))
  execFileSync(process.execPath, [path.join(ROOT, 'bench', 'run.mjs'), '--smoke', '--out', out], { stdio: 'ignore', timeout: 240000 })
  const results = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'))
  t.same(results.runs.map(r => r.mode).sort(), ['cluster-rr', 'fastify-reuseport', 'single', 'cluster-rr', 'fastify-reuseport', 'single'].sort())
  for (const r of results.runs) {
    t.ok(r.rps > 0 && r.requests > 0, `${r.mode} ${r.conn}: ${r.rps} req/s`)
    t.ok(r.p50ms > 0 && r.p99ms >= r.p50ms && r.maxms >= r.p99ms, `${r.mode} ${r.conn}: latency p50 ${r.p50ms} <= p99 ${r.p99ms} <= max ${r.maxms}`)
    const served = Object.values(r.pids).reduce((a, b) => a + b, 0)
    t.ok(served > 0, 'responses are attributed to workers')
    t.equal(Object.keys(r.pids).length, r.mode === 'single' ? 1 : 2, 'as many serving processes as workers')
    t.equal(r.failed, 0)
  }
  const frp = results.runs.filter(r => r.mode === 'fastify-reuseport')
  for (const r of frp) {
    t.ok(r.supervisorRssMb > 0, 'supervisor RSS is measured')
    t.equal(r.workerRssMb.length, 2, 'worker RSS is measured per worker')
    t.type(r.supervisorCpu, 'number')
  }
  t.equal(results.restarts.length, 4, 'restart runs for fastify-reuseport and cluster, both connection kinds')
  for (const r of results.restarts.filter(r => r.mode === 'fastify-reuseport')) t.equal(r.failed, 0, `no failed request across restarts (${r.conn})`)
  const md = fs.readFileSync(path.join(out, 'results.md'), 'utf8')
  t.match(md, /\| goal \| target \| measured \|/)
  t.match(md, /new connections vs cluster round-robin \(hello\) \| ≥ 1\.4× \| \d+\.\d\d×/)
  const svg = fs.readFileSync(path.join(out, 'results.svg'), 'utf8')
  t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/)
  t.equal((svg.match(/<rect x=/g) ?? []).length, 6, 'one bar per mode and connection kind')
  t.match(svg, /<\/svg>\n$/)
})

t.test('bench/fewconns.mjs --smoke', { skip: !hasCommand('wrk') && 'wrk is not installed (Debian package wrk)' }, async t => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-fewconns-'))
  t.teardown(() => fs.rmSync(out, { recursive: true, force: true }))
  execFileSync(process.execPath, [path.join(ROOT, 'bench', 'fewconns.mjs'), '--smoke', '--conns', '4', '--scenarios', 'proxy', '--out', out], { stdio: 'ignore', timeout: 120000 })
  const results = JSON.parse(fs.readFileSync(path.join(out, 'fewconns.json'), 'utf8'))
  const labels = results.keepAlive.map(r => r.label)
  for (const label of ['cluster round-robin', 'fastify-reuseport, balance on', 'fastify-reuseport, balance off']) t.ok(labels.includes(label), `${label} ran`)
  for (const r of results.keepAlive) {
    t.equal(r.scenario, 'proxy')
    t.ok(r.rps > 0, `${r.label}: ${r.rps} req/s`)
    t.equal(r.failed, 0, `${r.label}: no failed request`)
    t.equal(r.settled.length, 2, `${r.label}: a count per worker`)
    t.equal(r.settled.reduce((a, b) => a + b, 0), 4, `${r.label}: the workers hold the 4 connections (${r.settled.join('-')})`)
    t.equal(r.perWorkerRps.length, 2)
  }
  // wrk's delay() must hold each connection back: a 1 ms gap and 1 ms of work cap 4 connections far below hello world.
  for (const r of results.keepAlive) t.ok(r.rps < 4 * 1000, `${r.label}: ${r.rps} req/s is paced by the work and the gap`)
  t.equal(results.newConns.length, 2, 'new connections, balance on and off')
  t.type(results.goals.newConnectionsOnVsOff.ratio, 'number')
  t.type(results.goals.vsClusterRr4.ratio, 'number')
  const md = fs.readFileSync(path.join(out, 'fewconns.md'), 'utf8')
  t.match(md, /\| proxy: balance on ÷ cluster round-robin, 4 connections \| \d+\.\d\d \| ≥ 0\.97 \|/)
})
