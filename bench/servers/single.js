'use strict'

// One Fastify process (also one of N for Node's own reusePort, with REUSE_PORT=1).
const Fastify = require('fastify')
// HTTPS when TLS_KEY and TLS_CERT name a key and certificate (bench/tls.mjs).
const https = () => process.env.TLS_KEY ? { https: { key: require('node:fs').readFileSync(process.env.TLS_KEY), cert: require('node:fs').readFileSync(process.env.TLS_CERT) } } : {}

async function main () {
  // The logger fastify-cli and fastify-reuseport give an app: pino at level fatal.
  const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'fatal' }, ...https() })
  await app.register(require('./app'))
  await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1', ...(process.env.REUSE_PORT ? { reusePort: true } : {}) })
  process.stdout.write('ready\n')
  process.once('SIGTERM', () => app.close().then(() => process.exit(0)))
}
main()
