'use strict'

// One process serving the app through the fastify-reuseport plugin, alone.
const Fastify = require('fastify')

async function main () {
  // The logger fastify-cli and fastify-reuseport give an app: pino at level fatal.
  const app = Fastify({ logger: { level: 'fatal' } })
  await app.register(require('../..'))
  await app.register(require('./app'))
  await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' })
  process.stdout.write('ready\n')
  process.once('SIGTERM', () => app.close().then(() => process.exit(0)))
}
main()
