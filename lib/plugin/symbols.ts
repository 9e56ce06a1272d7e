// Private state kept on the http.Server instance fastify shares with us.
export const kPatched = Symbol('fastify-reuseport.patched')
export const kListeners = Symbol('fastify-reuseport.listeners')
export const kAccepted = Symbol('fastify-reuseport.accepted')
// Connection rebalancing (lib/worker/shed.ts): a socket told to close after its next
// response, the server's shedding state, and its HTTP/2 sessions.
export const kShed = Symbol('fastify-reuseport.shed')
export const kShedding = Symbol('fastify-reuseport.shedding')
export const kSessions = Symbol('fastify-reuseport.sessions')
// The app's drain hooks (fastify.onDrain) and the plugin contexts that may hold @fastify/websocket.
export const kDrainHooks = Symbol('fastify-reuseport.drainHooks')
export const kContexts = Symbol('fastify-reuseport.contexts')
