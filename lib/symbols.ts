// Private state kept on the http.Server instance fastify shares with us.
export const kPatched = Symbol('fastify-reuseport.patched')
export const kListeners = Symbol('fastify-reuseport.listeners')
export const kAccepted = Symbol('fastify-reuseport.accepted')
