'use strict'

// One process serving the app through the fastify-reuseport plugin, alone.
const Fastify = require('fastify')

async function main () {
  const app = Fastify({ logger: false })
  await app.register(require('../..'))
  await app.register(require('./app'))
  await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' })
  process.stdout.write('ready\n')
  process.once('SIGTERM', () => app.close().then(() => process.exit(0)))
}
main()
