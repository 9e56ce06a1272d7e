'use strict'

// Node's cluster: N workers behind the primary, round-robin (SCHED=rr) or
// shared-socket (SCHED=none). SIGHUP restarts workers one by one, the usual
// way: fork a new one, wait until it listens, disconnect the old one.
const cluster = require('node:cluster')

if (cluster.isPrimary) {
  cluster.schedulingPolicy = process.env.SCHED === 'none' ? cluster.SCHED_NONE : cluster.SCHED_RR
  const n = Number(process.env.WORKERS ?? 2)
  const fork = () => new Promise(resolve => { const w = cluster.fork(); w.once('listening', () => resolve(w)) })
  Promise.all(Array.from({ length: n }, fork)).then(() => process.stdout.write('ready\n'))
  process.on('SIGHUP', async () => {
    for (const old of Object.values(cluster.workers)) {
      await fork()
      old.disconnect()
    }
    process.stdout.write('reloaded\n')
  })
  // A crashed worker is replaced, as PM2 or any supervisor would do.
  cluster.on('exit', worker => { if (!worker.exitedAfterDisconnect && !stopping) fork() })
  let stopping = false
  process.on('SIGTERM', () => { stopping = true; for (const w of Object.values(cluster.workers)) w.kill(); process.exit(0) })
} else {
  const Fastify = require('fastify')
  // HTTPS when TLS_KEY and TLS_CERT name a key and certificate (bench/tls.mjs).
  const https = () => process.env.TLS_KEY ? { https: { key: require('node:fs').readFileSync(process.env.TLS_KEY), cert: require('node:fs').readFileSync(process.env.TLS_CERT) } } : {}
  // The logger fastify-cli and fastify-reuseport give an app: pino at level fatal.
  const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'fatal' }, ...https() })
  app.register(require('./app'))
  app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' })
  process.on('disconnect', () => app.close().then(() => process.exit(0)))
}
