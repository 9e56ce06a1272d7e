'use strict'

// The real fastify-cli: `fastify start` twice on one port, both serve.
const t = require('tap')
const { fastifyStart, freePort, load } = require('../helpers')

for (const [name, args] of [['-a 127.0.0.1', ['-a', '127.0.0.1']], ['default address', []]]) {
  t.test(`two "fastify start ${name} -p P app.js" processes serve one port`, async t => {
    const port = await freePort()
    const a = fastifyStart([...args, '-p', String(port), '-l', 'info'])
    const b = fastifyStart([...args, '-p', String(port), '-l', 'info'])
    t.teardown(() => { a.child.kill('SIGKILL'); b.child.kill('SIGKILL') })
    await Promise.all([a.ready, b.ready])
    const r = await load({ url: `http://127.0.0.1:${port}`, durationMs: 1500, connections: 4, keepAlive: false })
    t.equal(r.failed, 0, 'no failed request')
    t.ok(r.pids[a.child.pid] > 0 && r.pids[b.child.pid] > 0, `both processes serve: ${JSON.stringify(r.pids)}`)
    t.notMatch(a.output() + b.output(), /EADDRINUSE/, 'no bind error in either log')
  })
}
