'use strict'

// The benchmark app: hello world, and a route doing about 1 ms of CPU work.
// Every response names the process that served it (x-pid), for worker shares.
module.exports = async function app (fastify, opts) {
  const pid = String(process.pid)
  fastify.get('/', (request, reply) => {
    reply.header('x-pid', pid)
    return { hello: 'world' }
  })
  fastify.get('/cpu', (request, reply) => {
    const until = process.hrtime.bigint() + 1000000n
    let x = 0
    while (process.hrtime.bigint() < until) x++
    reply.header('x-pid', pid)
    return { spins: x }
  })
  // An uncaught exception thrown from a timer, after this reply (bench/crash.mjs).
  fastify.get('/crash', (request, reply) => {
    setTimeout(() => { throw new Error('an uncaught exception from a timer') }, 0)
    reply.header('x-pid', pid)
    return { crashing: true }
  })
  fastify.get('/block', (request, reply) => {
    const until = Date.now() + Number(request.query.ms ?? 2000)
    while (Date.now() < until) { /* a stuck event loop */ }
    reply.header('x-pid', pid)
    return { blocked: true }
  })
}
