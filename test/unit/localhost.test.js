'use strict'

// Default listen options with a localhost that resolves to 127.0.0.1 and ::1,
// as on most machines (this one resolves it to 127.0.0.1 only). fastify binds
// both; two processes must both serve on both. ip netns exec mounts
// /etc/netns/NAME/hosts over /etc/hosts, which gives such a localhost.
const t = require('tap')
const { execFileSync, spawn } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')
const { FIXTURES, hasCommand } = require('../helpers')

const skip = process.getuid?.() !== 0
  ? 'needs root to make a network namespace with its own /etc/hosts (CI runs as root)'
  : !hasCommand('ip') ? 'needs ip (Debian package iproute2)' : false

t.test('localhost = 127.0.0.1 and ::1: two processes share both', { skip }, async t => {
  const name = `frp-lh-${crypto.randomBytes(3).toString('hex')}`
  const etc = path.join('/etc/netns', name)
  fs.mkdirSync(etc, { recursive: true })
  fs.writeFileSync(path.join(etc, 'hosts'), '127.0.0.1 localhost\n::1 localhost\n')
  execFileSync('ip', ['netns', 'add', name])
  const procs = []
  t.teardown(() => {
    for (const p of procs) p.kill('SIGKILL')
    try { execFileSync('ip', ['netns', 'del', name]) } catch {}
    fs.rmSync(etc, { recursive: true, force: true })
  })
  execFileSync('ip', ['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up'])
  const port = 4100
  for (let i = 0; i < 2; i++) {
    procs.push(spawn('ip', ['netns', 'exec', name, process.execPath, path.join(FIXTURES, 'serve.js')],
      { env: { ...process.env, LISTEN: JSON.stringify({ port }) }, stdio: ['ignore', 'pipe', 'inherit'] }))
  }
  const lines = await Promise.all(procs.map(p => new Promise(resolve => p.stdout.once('data', d => resolve(JSON.parse(String(d)))))))
  for (const l of lines) {
    t.notOk(l.error, 'listens')
    t.same(l.listening.map(a => a.address).sort(), ['127.0.0.1', '::1'], 'addresses() lists both loopback addresses')
  }
  const client = `
    const hosts = ['127.0.0.1', '[::1]']
    ;(async () => {
      const seen = {}
      for (const h of hosts) {
        seen[h] = {}
        for (let i = 0; i < 60; i++) {
          const r = await fetch('http://' + h + ':${port}/', { headers: { connection: 'close' } })
          const { pid } = await r.json()
          seen[h][pid] = (seen[h][pid] ?? 0) + 1
        }
      }
      console.log(JSON.stringify(seen))
    })()`
  const seen = JSON.parse(execFileSync('ip', ['netns', 'exec', name, process.execPath, '-e', client], { encoding: 'utf8' }))
  const pids = procs.map(p => String(p.pid))
  for (const h of ['127.0.0.1', '[::1]']) {
    t.same(Object.keys(seen[h]).sort(), [...pids].sort(), `both processes serve on ${h}: ${JSON.stringify(seen[h])}`)
  }
})
