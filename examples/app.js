'use strict'

// The demo app: a plain Fastify plugin, as "fastify start" expects.
module.exports = async function app (fastify, opts) {
  fastify.get('/', async () => ({ hello: 'world', pid: process.pid }))
  fastify.get('/health', async () => ({ ok: true }))
}
