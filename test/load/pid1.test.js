'use strict'

// The supervisor as a container's PID 1: signals work and orphaned processes
// are reaped. A new PID namespace (unshare, root) stands in for the container.
const t = require('tap')
const fs = require('node:fs')
const path = require('node:path')
const { request } = require('undici')
const { FIXTURES, alive, childrenOf, freePort, hasCommand, sleep, startCli, waitFor } = require('../helpers')

const skip = process.getuid?.() !== 0
  ? 'needs root to make a PID namespace (CI runs as root)'
  : !hasCommand('unshare') ? 'needs unshare (Debian package util-linux)' : false

function stat (pid) {
  try {
    const [, rest] = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')
    const [state, ppid] = rest.split(' ')
    return { state, ppid: Number(ppid) }
  } catch {
    return null
  }
}

t.test('as PID 1: orphans are reaped, SIGTERM exits 0', { skip }, async t => {
  const port = await freePort()
  const sup = await startCli(['-w', '2', '-a', '127.0.0.1', '-p', String(port), path.join(FIXTURES, 'app.js')],
    { wrap: ['unshare', '--pid', '--fork', '--mount-proc'] })
  t.teardown(() => sup.stop('SIGKILL'))
  // unshare forks; its child is PID 1 of the new namespace: our supervisor.
  const [pid1] = await waitFor(() => { const c = childrenOf(sup.child.pid); return c.length === 1 && c })
  t.equal(fs.readFileSync(`/proc/${pid1}/status`, 'utf8').match(/NSpid:\s+\d+\s+(\d+)/)?.[1], '1', 'the supervisor is PID 1 in its namespace')
  const workers = childrenOf(pid1)
  t.equal(workers.length, 2)

  for (let i = 0; i < 4; i++) t.equal((await request(`http://127.0.0.1:${port}/orphan`, { reset: true })).statusCode, 200)
  const adopted = childrenOf(pid1).filter(p => !workers.includes(p))
  t.ok(adopted.length > 0, `orphans were reparented to PID 1: ${adopted}`)
  await sleep(2500)
  const zombies = childrenOf(pid1).filter(p => stat(p)?.state === 'Z')
  t.same(zombies, [], 'no zombie left under PID 1')
  for (const p of adopted) t.notOk(alive(p), `orphan ${p} was reaped`)

  process.kill(pid1, 'SIGTERM')
  const exit = await sup.exited
  t.same(exit, { code: 0, signal: null }, 'SIGTERM to PID 1: graceful exit 0')
  for (const w of workers) t.notOk(alive(w), `worker ${w} is gone`)
})

t.test('as PID 1: SIGUSR2 upgrades in place, still PID 1, the adopted workers reaped, no zombie', { skip }, async t => {
  const port = await freePort()
  const sup = await startCli(['-w', '2', '-a', '127.0.0.1', '-p', String(port), path.join(FIXTURES, 'app.js')],
    { wrap: ['unshare', '--pid', '--fork', '--mount-proc'] })
  t.teardown(() => sup.stop('SIGKILL'))
  const [pid1] = await waitFor(() => { const c = childrenOf(sup.child.pid); return c.length === 1 && c })
  const workers = childrenOf(pid1)
  process.kill(pid1, 'SIGUSR2')
  await waitFor(() => sup.lines.some(l => /^upgrade: done/.test(l.msg)), { timeout: 20000, what: 'the upgrade' })
  await waitFor(() => workers.every(w => !alive(w)), { what: 'the adopted workers to be reaped' })
  t.equal(fs.readFileSync(`/proc/${pid1}/status`, 'utf8').match(/NSpid:\s+\d+\s+(\d+)/)?.[1], '1', 'the same process, still PID 1')
  t.same(childrenOf(pid1).filter(p => stat(p)?.state === 'Z'), [], 'no zombie')
  t.equal(childrenOf(pid1).length, 2, 'two workers, its children')
  t.equal((await request(`http://127.0.0.1:${port}/`)).statusCode, 200)
  process.kill(pid1, 'SIGTERM')
  t.same(await sup.exited, { code: 0, signal: null })
})
