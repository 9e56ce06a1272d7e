'use strict'

// One Fastify process (also one of N for Node's own reusePort, with REUSE_PORT=1).
const Fastify = require('fastify')

async function main () {
  // The logger fastify-cli and fastify-reuseport give an app: pino at level fatal.
  const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'fatal' } })
  await app.register(require('./app'))
  await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1', ...(process.env.REUSE_PORT ? { reusePort: true } : {}) })
  process.stdout.write('ready\n')
  process.once('SIGTERM', () => app.close().then(() => process.exit(0)))
}
main()
