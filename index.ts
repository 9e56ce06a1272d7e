import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { loadNative } from './lib/native'
import { resolveOptions, type FastifyReuseportOptions } from './lib/options'
import { inClusterWorker, isSupervised, patchListen } from './lib/listen'
import { decorateDrain, type DrainHook } from './lib/drain'

export type { FastifyReuseportOptions } from './lib/options'
export type { StartOptions, ReplaceReason } from './lib/supervisor'
export type { SupervisorHandle, SupervisorEvents, SlotState, SlotInfo } from './lib/handle'
export type { Balancer } from './lib/options'
export { start } from './lib/supervisor'
export { steerProgram } from './lib/steering'
export type { DrainHook } from './lib/drain'

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
  if (inClusterWorker()) return
  // A worker's slot fds are served by Node itself: it needs no addon.
  const { binding, reason } = isSupervised() ? { binding: null, reason: null } : loadNative()
  if (reason !== null) {
    fastify.log.warn({ code: 'FST_REUSEPORT_UNSUPPORTED' }, `fastify-reuseport: ${reason}; listening without SO_REUSEPORT`)
    return
  }
  patchListen(fastify, binding, options)
}

const plugin = fp(fastifyReuseport, { name: 'fastify-reuseport', fastify: '5.x' })

export { plugin as fastifyReuseport }
export default plugin

// fastify convention: require('fastify-reuseport') is the plugin itself, with
// the named exports on it. __esModule stays behind (it is not enumerable), so
// TypeScript's default-import interop resolves to the plugin too.
module.exports = Object.assign(plugin, module.exports)
