// The plugin: fastify.register(reuseport). It serves a slot fd handed down by
// the supervisor, or, in a process of its own (fastify start, node app.js),
// opens an SO_REUSEPORT socket itself so that N processes can share a port.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { loadNative } from '../common/native'
import { resolveOptions, type FastifyReuseportOptions } from './options'
import { inClusterWorker, isSupervised, patchListen } from './listen'
import { decorateDrain, type DrainHook } from './drain'
import { shareKeyFile } from './tls-key-file'

declare module 'fastify' {
  interface FastifyListenOptions {
    /** Serve an already listening socket (the supervisor hands each worker its slot's fd). */
    fd?: number
  }
  interface FastifyInstance {
    /**
     * Runs hook when this worker starts draining (a reload, a shutdown, a
     * retired slot), while in-flight requests are still served: end your own
     * long-lived streams there so that their clients reconnect to the new
     * worker. Under fastify-reuseport start only; never called otherwise.
     *
     * Optional: it exists once this plugin is registered, which
     * `fastify-reuseport start` does in every worker before the app. Under
     * `fastify start` or in a test without the plugin it is undefined, hence
     * `fastify.onDrain?.(hook)`.
     */
    onDrain? (hook: DrainHook): FastifyInstance
  }
}

async function fastifyReuseport (fastify: FastifyInstance, opts: FastifyReuseportOptions): Promise<void> {
  const options = resolveOptions(opts)
  decorateDrain(fastify)
  if (options.tlsTicketKeys !== undefined) shareKeyFile(fastify, options.tlsTicketKeys)
  if (inClusterWorker()) return
  // A worker's slot fds are served by Node itself: it needs no addon.
  const { binding, reason } = isSupervised() ? { binding: null, reason: null } : loadNative()
  if (reason !== null) {
    fastify.log.warn({ code: 'FST_REUSEPORT_UNSUPPORTED' }, `fastify-reuseport: ${reason}; listening without SO_REUSEPORT`)
    return
  }
  patchListen(fastify, binding, options)
}

export const plugin = fp(fastifyReuseport, { name: 'fastify-reuseport', fastify: '5.x' })
