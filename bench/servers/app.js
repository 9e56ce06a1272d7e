'use strict'

// The benchmark app: hello world, and a route doing CPU work (1 ms, or ?ms=).
// Every response names the process that served it (x-pid), for worker shares.
module.exports = async function app (fastify, opts) {
  const pid = String(process.pid)
  fastify.get('/', (request, reply) => {
    reply.header('x-pid', pid)
    return { hello: 'world' }
  })
  fastify.get('/cpu', (request, reply) => {
    const until = process.hrtime.bigint() + BigInt(Math.round(Number(request.query.ms ?? 1) * 1e6))
    let x = 0
    while (process.hrtime.bigint() < until) x++
    reply.header('x-pid', pid)
    return { spins: x }
  })
  // Holds the event loop without using the CPU: a request costs the worker its
  // time as CPU work would, but not the cores the client and supervisor share.
  const cell = new Int32Array(new SharedArrayBuffer(4))
  fastify.get('/busy', (request, reply) => {
    Atomics.wait(cell, 0, 0, Number(request.query.ms ?? 1))
    reply.header('x-pid', pid)
    return { busy: true }
  })
  fastify.get('/block', (request, reply) => {
    const until = Date.now() + Number(request.query.ms ?? 2000)
    while (Date.now() < until) { /* a stuck event loop */ }
    reply.header('x-pid', pid)
    return { blocked: true }
  })
}
