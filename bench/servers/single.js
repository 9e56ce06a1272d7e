'use strict'

// One Fastify process (also one of N for Node's own reusePort, with REUSE_PORT=1).
const Fastify = require('fastify')

async function main () {
  const app = Fastify({ logger: false })
  await app.register(require('./app'))
  await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1', ...(process.env.REUSE_PORT ? { reusePort: true } : {}) })
  process.stdout.write('ready\n')
  process.once('SIGTERM', () => app.close().then(() => process.exit(0)))
}
main()
