import createError from '@fastify/error'

// One catalogue for every error this package raises itself; system errors
// (EADDRINUSE, ENOTFOUND, ...) keep Node's own codes.
export const FST_REUSEPORT_INVALID_OPTION = createError(
  'FST_REUSEPORT_INVALID_OPTION', 'Invalid option "%s": %s, received %s', 500, TypeError)

export const FST_REUSEPORT_INVALID_PORT = createError(
  'FST_REUSEPORT_INVALID_PORT', 'Invalid port: it must be an integer >= 0 and <= 65535, received %s', 500, RangeError)

export const FST_REUSEPORT_INVALID_ARGUMENT = createError(
  'FST_REUSEPORT_INVALID_ARGUMENT', '%s')

export const FST_REUSEPORT_APP_NOT_FOUND = createError(
  'FST_REUSEPORT_APP_NOT_FOUND', 'App file %s does not exist')

export const FST_REUSEPORT_APP_INVALID = createError(
  'FST_REUSEPORT_APP_INVALID', 'App file %s must export a Fastify plugin function, it exports %s')

export const FST_REUSEPORT_WORKER_FAILED = createError(
  'FST_REUSEPORT_WORKER_FAILED', 'Worker for slot %d failed to start: %s')

export const FST_REUSEPORT_READY_TIMEOUT = createError(
  'FST_REUSEPORT_READY_TIMEOUT', 'Worker for slot %d was not ready within %d ms')

export const FST_REUSEPORT_INHERITED = createError(
  'FST_REUSEPORT_INHERITED', 'Invalid inherited listeners in FASTIFY_REUSEPORT_LISTENERS: %s')

export const FST_REUSEPORT_UNSUPPORTED = createError(
  'FST_REUSEPORT_UNSUPPORTED', 'Cannot run supervised workers: %s')

export const FST_REUSEPORT_CRASH_LOOP = createError(
  'FST_REUSEPORT_CRASH_LOOP', 'No worker has served for %d ms: every slot keeps failing (last: %s); exiting so that the restart policy takes over')

export const FST_REUSEPORT_TLS_TICKET_KEYS = createError(
  'FST_REUSEPORT_TLS_TICKET_KEYS', 'TLS ticket key file %s: %s')

export const FST_REUSEPORT_UPGRADE_FAILED = createError(
  'FST_REUSEPORT_UPGRADE_FAILED', 'Upgrade failed, the running supervisor keeps serving: %s')

export const FST_REUSEPORT_PROTOCOL = createError(
  'FST_REUSEPORT_PROTOCOL', 'Control protocol mismatch: %s')

/** Every error code of the catalogue, as fastify exports its own (fastify.errorCodes). */
export const errorCodes = {
  FST_REUSEPORT_INVALID_OPTION,
  FST_REUSEPORT_INVALID_PORT,
  FST_REUSEPORT_INVALID_ARGUMENT,
  FST_REUSEPORT_APP_NOT_FOUND,
  FST_REUSEPORT_APP_INVALID,
  FST_REUSEPORT_WORKER_FAILED,
  FST_REUSEPORT_READY_TIMEOUT,
  FST_REUSEPORT_INHERITED,
  FST_REUSEPORT_UNSUPPORTED,
  FST_REUSEPORT_CRASH_LOOP,
  FST_REUSEPORT_TLS_TICKET_KEYS,
  FST_REUSEPORT_UPGRADE_FAILED,
  FST_REUSEPORT_PROTOCOL
}

/** An error sent by a worker (ErrorInfo), as an Error again: the cause of FST_REUSEPORT_WORKER_FAILED and of crash lines. */
export function reviveError (info: { name: string, message: string, code?: string, stack: string }): Error & { code?: string } {
  const err: Error & { code?: string } = new Error(info.message)
  err.name = info.name
  err.stack = info.stack
  if (info.code !== undefined) err.code = info.code
  return err
}
