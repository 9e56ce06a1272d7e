'use strict'

// TLS session resumption on every supported Node line, in both modes: with
// Node's internal ticket key callback (previous, current and next keys), and
// without it (a preload deletes it, as a Node that dropped it would be): one
// key, said in the start line. Keys rotate every 2 s here.
const t = require('tap')
const fs = require('node:fs')
const path = require('node:path')
const { FIXTURES, NODE_MAJORS, freePort, nodeBinary, onNode, prebuildsMissing, startCli } = require('../helpers')
const { makeCert, nodeConnect, nodeResume, reconnectTls12, rotated } = require('../tls-clients')

const ENV = prebuildsMissing() === null ? { PREBUILDS_ONLY: '1' } : {}
const cert = makeCert()
t.teardown(() => fs.rmSync(cert.dir, { recursive: true, force: true }))

for (const major of NODE_MAJORS) {
  const { bin, why } = nodeBinary(major)
  for (const mode of ['rotating', 'single']) {
    t.test(`Node ${major}, ${mode} mode`, { skip: why ?? false }, async t => {
      const port = await freePort()
      const env = { ...ENV, TLS_KEY: cert.key, TLS_CERT: cert.cert, ...(mode === 'single' ? { NODE_OPTIONS: `--require ${path.join(FIXTURES, 'no-ticket-callback.js')}` } : {}) }
      const sup = await startCli(['-w', '2', '-o', '-a', '127.0.0.1', '-p', String(port), '--tls-ticket-rotation', '2000', path.join(FIXTURES, 'tls-app.js')], { wrap: onNode(bin), env })
      t.teardown(() => sup.stop('SIGKILL'))
      const line = sup.lines.find(l => typeof l.msg === 'string' && l.msg.startsWith('TLS session resumption'))
      t.equal(line?.tlsTickets, mode, `start line: ${line?.msg}`)
      const v12 = await reconnectTls12(port, 4)
      t.ok(v12.resumed >= 19, `openssl TLS 1.2 -reconnect: ${v12.resumed} of ${v12.total} resumed`)
      const n13 = await nodeResume(port, { runs: 10 })
      t.ok(n13.resumed >= 9, `Node tls client, TLS 1.3: ${n13.resumed} of ${n13.total} resumed`)
      const { session, name } = await nodeConnect(port, { waitMs: 100 })
      await rotated(port, name)
      const reused = (await nodeConnect(port, { session })).reused
      if (mode === 'rotating') t.ok(reused, 'a session from before a rotation resumes after it')
      else t.notOk(reused, 'one key: a session from before a rotation takes a full handshake (docs/tls.md)')
      t.same(await sup.stop('SIGTERM'), { code: 0, signal: null }, 'graceful exit')
    })
  }
}
