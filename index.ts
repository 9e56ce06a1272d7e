// The package: the plugin (the default export, as fastify plugins are) and
// the supervisor's programmatic API.
import { plugin } from './lib/plugin/plugin'

export type { FastifyReuseportOptions } from './lib/plugin/options'
export type { DrainHook } from './lib/plugin/drain'
export type { StartOptions, Balancer } from './lib/supervisor/options'
export type { ReplaceReason } from './lib/supervisor/policy'
export type { SupervisorHandle, SupervisorEvents, SlotState, SlotInfo } from './lib/supervisor/handle'
export { start } from './lib/supervisor/start'
export { steerProgram } from './lib/supervisor/steering'
export { errorCodes } from './lib/common/errors'

export { plugin as fastifyReuseport }
export default plugin

// fastify convention: require('fastify-reuseport') is the plugin itself, with
// the named exports on it. __esModule stays behind (it is not enumerable), so
// TypeScript's default-import interop resolves to the plugin too.
module.exports = Object.assign(plugin, module.exports)
