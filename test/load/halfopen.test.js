'use strict'

// Half-open handshakes across restarts, crashes and scale-down. Each scenario
// runs in a network namespace made here, where nftables drops every packet
// but SYNs to the server port for a while: the handshakes sit in SYN_RECV on
// the slots. Needs root, ip and nft; elsewhere it skips and says why.
const t = require('tap')
const { execFileSync, spawn } = require('node:child_process')
const crypto = require('node:crypto')
const path = require('node:path')
const { FIXTURES, alive, hasCommand, processesWith, sleep, startCli, waitFor } = require('../helpers')

function why () {
  if (process.getuid?.() !== 0) return 'needs root to make network namespaces and nftables rules (CI runs as root)'
  if (!hasCommand('ip')) return 'needs ip (Debian package iproute2)'
  if (!hasCommand('nft')) return 'needs nft (Debian package nftables)'
  try {
    const name = `frp-probe-${process.pid}`
    execFileSync('ip', ['netns', 'add', name], { stdio: 'ignore' })
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' })
  } catch {
    return 'network namespaces are not allowed here (ip netns add failed)'
  }
  return false
}

const skip = why()
if (skip) t.comment(`skipping half-open tests: ${skip}`)

const app = path.join(FIXTURES, 'app.js')
const PORT = 4000
const COUNT = 20

/** A network namespace with loopback up, removed at teardown. */
function netns (t, { migrate = false } = {}) {
  const name = `frp-${crypto.randomBytes(4).toString('hex')}`
  const run = (...cmd) => execFileSync('ip', ['netns', 'exec', name, ...cmd], { encoding: 'utf8' })
  execFileSync('ip', ['netns', 'add', name])
  t.teardown(() => {
    for (const pid of processesWith(name)) try { process.kill(pid, 'SIGKILL') } catch {}
    try { execFileSync('ip', ['netns', 'del', name]) } catch {}
  })
  run('ip', 'link', 'set', 'lo', 'up')
  run('sysctl', '-qw', `net.ipv4.tcp_migrate_req=${migrate ? 1 : 0}`)
  const nft = rules => execFileSync('ip', ['netns', 'exec', name, 'nft', '-f', '-'], { input: rules })
  return {
    name,
    wrap: ['ip', 'netns', 'exec', name],
    holdAcks: () => nft(`table inet frp {\n chain input {\n  type filter hook input priority 0; policy accept;\n  tcp dport ${PORT} tcp flags & syn == 0 drop\n }\n}\n`),
    release: () => nft('delete table inet frp\n'),
    synRecv: () => run('ss', '-Htn', 'state', 'syn-recv', `sport = :${PORT}`).trim().split('\n').filter(Boolean).length,
    migrations: () => {
      const lines = run('cat', '/proc/net/netstat').split('\n').filter(l => l.startsWith('TcpExt:'))
      const [names, values] = lines.map(l => l.trim().split(/\s+/))
      const get = key => Number(values[names.indexOf(key)] ?? 0)
      return { success: get('TCPMigrateReqSuccess'), failure: get('TCPMigrateReqFailure') }
    },
    listeners: () => run('ss', '-Hltn', `sport = :${PORT}`).trim().split('\n').filter(Boolean).length
  }
}

/** COUNT clients whose handshakes the server has not finished. */
async function halfOpen (t, ns, count = COUNT) {
  ns.holdAcks()
  const client = spawn('ip', ['netns', 'exec', ns.name, process.execPath, path.join(FIXTURES, 'raw-client.js')], {
    env: { ...process.env, PORT: String(PORT), COUNT: String(count), TIMEOUT_MS: '40000' }, stdio: ['ignore', 'pipe', 'inherit']
  })
  const lines = []
  client.stdout.on('data', d => lines.push(...String(d).trim().split('\n').map(l => JSON.parse(l))))
  await waitFor(() => ns.synRecv() === count, { what: `${count} handshakes in SYN_RECV` })
  t.equal(ns.synRecv(), count, `${count} handshakes sit in SYN_RECV on the slots`)
  return {
    result: () => waitFor(() => lines.find(l => 'ok' in l), { timeout: 60000, what: 'the client to finish' })
  }
}

const msgs = (sup, re) => sup.lines.filter(l => typeof l.msg === 'string' && re.test(l.msg))

t.test('half-open handshakes', { skip }, async t => {
  t.test('survive a rolling restart', async t => {
    const ns = netns(t)
    const sup = await startCli(['-w', '2', '-a', '127.0.0.1', '-p', String(PORT), app], { wrap: ns.wrap })
    const before = sup.workerPids()
    const clients = await halfOpen(t, ns)
    sup.child.kill('SIGHUP')
    await waitFor(() => msgs(sup, /^reload: all 2 slots replaced$/).length === 1, { timeout: 20000, what: 'the reload' })
    await waitFor(() => before.every(pid => !alive(pid)), { what: 'old workers to exit' })
    t.pass('every old worker has exited while the handshakes were held')
    ns.release()
    const r = await clients.result()
    t.same(r, { ok: COUNT, failed: 0, errors: {} }, `all ${COUNT} served`)
    await sup.stop()
  })

  t.test('40 survive an in-place upgrade of the supervisor (SIGUSR2): same sockets, nothing reset', async t => {
    const ns = netns(t)
    const sup = await startCli(['-w', '2', '-a', '127.0.0.1', '-p', String(PORT), app], { wrap: ns.wrap })
    const before = sup.workerPids()
    const clients = await halfOpen(t, ns, 40)
    sup.child.kill('SIGUSR2')
    await waitFor(() => msgs(sup, /^upgrade: done/).length === 1, { timeout: 20000, what: 'the upgrade' })
    await waitFor(() => before.every(pid => !alive(pid)), { what: 'the adopted workers to exit' })
    t.pass('the supervisor program was replaced and every adopted worker has exited while the handshakes were held')
    ns.release()
    const r = await clients.result()
    t.same(r, { ok: 40, failed: 0, errors: {} }, 'all 40 served')
    await sup.stop()
  })

  t.test('survive kill -9 of every worker', async t => {
    const ns = netns(t)
    const sup = await startCli(['-w', '2', '-a', '127.0.0.1', '-p', String(PORT), app], { wrap: ns.wrap })
    const before = sup.workerPids()
    const clients = await halfOpen(t, ns)
    for (const pid of before) process.kill(pid, 'SIGKILL')
    await waitFor(() => msgs(sup, /: worker \d+ ready$/).length === 2, { timeout: 20000, what: 'both replacements' })
    ns.release()
    const r = await clients.result()
    t.same(r, { ok: COUNT, failed: 0, errors: {} }, `all ${COUNT} served`)
    await sup.stop()
  })

  t.test('survive a scale-down: the retired slot is steered out and serves its handshakes before it closes', async t => {
    const ns = netns(t)
    const sup = await startCli(['-w', '3', '--handshake-grace', '4000', '-a', '127.0.0.1', '-p', String(PORT), app], { wrap: ns.wrap })
    t.equal(ns.listeners(), 3)
    const clients = await halfOpen(t, ns)
    sup.child.kill('SIGTTOU')
    await waitFor(() => msgs(sup, /^scale: slot 3 of 3 steered out/).length === 1, { what: 'the slot to be steered out' })
    await sleep(300)
    ns.release()
    const r = await clients.result()
    t.same(r, { ok: COUNT, failed: 0, errors: {} }, `all ${COUNT} served`)
    await waitFor(() => msgs(sup, /^scale: slot 3 retired, 2 left$/).length === 1, { timeout: 20000, what: 'the slot to close' })
    t.equal(ns.listeners(), 2, 'the slot socket is closed')
    await sup.stop()
  })

  for (const migrate of [false, true]) {
    t.test(`handshakes that outlive the retire grace: tcp_migrate_req=${migrate ? 1 : 0}`, async t => {
      const ns = netns(t, { migrate })
      const sup = await startCli(['-w', '2', '--handshake-grace', '200', '-a', '127.0.0.1', '-p', String(PORT), app], { wrap: ns.wrap })
      t.match(msgs(sup, /^safety nets/)[0].msg, `tcp_migrate_req ${migrate ? 'on' : 'off'}`, 'reported at start')
      const clients = await halfOpen(t, ns)
      const counters = ns.migrations()
      sup.child.kill('SIGTTOU')
      await waitFor(() => msgs(sup, /^scale: slot 2 retired, 1 left$/).length === 1, { timeout: 20000, what: 'the slot to close' })
      ns.release()
      const r = await clients.result()
      const after = ns.migrations()
      if (migrate) {
        t.same(r, { ok: COUNT, failed: 0, errors: {} }, 'the kernel migrated the retired slot\'s handshakes: all served')
        t.ok(after.success > counters.success, `TcpExtTCPMigrateReqSuccess grew: ${counters.success} -> ${after.success}`)
      } else {
        // The control: without the safety net, handshakes left on a closed socket are reset.
        t.ok(r.failed > 0, `without migration, handshakes on the closed slot fail: ${JSON.stringify(r)}`)
        t.equal(after.success, counters.success, 'no migration counted')
      }
      await sup.stop()
    })
  }
})
