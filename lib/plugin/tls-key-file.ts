// The plugin's tlsTicketKeys option: processes that no supervisor of ours
// started (fastify start, several containers behind one balancer) share TLS
// sessions through one key file, read at register and again on SIGHUP or
// when it changes.
import fs from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { readKeyFile } from '../common/ticket-keys'
import { SharedTickets, isTlsServer, supervisorHoldsKeys } from './tls-keys'

const WATCH_MS = 1000

/** Throws FST_REUSEPORT_TLS_TICKET_KEYS for a file that cannot be used: the app does not start. */
export function shareKeyFile (fastify: FastifyInstance, file: string): void {
  if (supervisorHoldsKeys()) {
    fastify.log.warn(`fastify-reuseport: tlsTicketKeys ${file} ignored: under fastify-reuseport start the supervisor hands out the keys (use --tls-ticket-keys)`)
    return
  }
  const ring = readKeyFile(file)
  const server: unknown = fastify.server
  if (!isTlsServer(server)) {
    fastify.log.warn(`fastify-reuseport: tlsTicketKeys ${file} ignored: the server has no TLS (no https option)`)
    return
  }
  const shared = new SharedTickets(ring)
  shared.attach(server)
  fastify.log.info(`fastify-reuseport: TLS session tickets from ${file} (${ring.length === 3 ? 'previous, current and next keys' : 'one key'}; ${shared.mode === 'rotating' ? 'all accepted' : 'the current one only: this Node lacks the internal ticket key callback'}), read again on SIGHUP and when it changes`)
  // A SIGHUP listener replaces Node's default (exit): as nginx, SIGHUP re-reads.
  const reread = (): void => {
    try {
      shared.update(readKeyFile(file))
      fastify.log.info(`fastify-reuseport: TLS ticket keys read again from ${file}`)
    } catch (err) {
      fastify.log.error({ err }, `${(err as Error).message}; keeping the TLS ticket keys in use`)
    }
  }
  process.on('SIGHUP', reread)
  // fastify start closes on SIGHUP (close-with-grace), and a mounted secret
  // changes without a signal: the file is watched too (stat polling, which
  // sees a Kubernetes secret's symlink swap; inotify on the old inode would not).
  const changed = (now: fs.Stats, before: fs.Stats): void => {
    if (now.mtimeMs !== before.mtimeMs || now.ino !== before.ino || now.size !== before.size) reread()
  }
  fs.watchFile(file, { interval: WATCH_MS, persistent: false }, changed)
  fastify.addHook('onClose', (_instance, done) => {
    process.off('SIGHUP', reread)
    fs.unwatchFile(file, changed)
    done()
  })
}
