// The plugin's options, validated at register time.
import { FST_REUSEPORT_INVALID_OPTION } from '../common/errors'
import { received, validateBacklog } from '../common/validate'

export interface FastifyReuseportOptions {
  /** listen(2) backlog for sockets the plugin opens; a listen() `backlog` wins. Default 511, as Node. */
  backlog?: number
  /** For `::`, accept IPv6 only instead of dual-stack. Default false. */
  ipv6Only?: boolean
}

export interface ResolvedOptions {
  backlog: number
  ipv6Only: boolean
}

const KNOWN = new Set(['backlog', 'ipv6Only'])

/** Validates plugin options at register time, naming the option and the value received. */
export function resolveOptions (opts: unknown): ResolvedOptions {
  if (opts === undefined || opts === null) opts = {}
  if (typeof opts !== 'object' || Array.isArray(opts)) {
    throw new FST_REUSEPORT_INVALID_OPTION('options', 'must be an object', received(opts))
  }
  const o = opts as Record<string, unknown>
  for (const key of Object.keys(o)) {
    // fastify passes its own register options (prefix, ...) through to plugins.
    if (!KNOWN.has(key) && key !== 'prefix' && key !== 'logLevel' && key !== 'logSerializers') {
      throw new FST_REUSEPORT_INVALID_OPTION(key, 'is not an option of fastify-reuseport (known: backlog, ipv6Only)', received(o[key]))
    }
  }
  const backlog = o.backlog === undefined ? 511 : validateBacklog(o.backlog)
  if (o.ipv6Only !== undefined && typeof o.ipv6Only !== 'boolean') {
    throw new FST_REUSEPORT_INVALID_OPTION('ipv6Only', 'must be a boolean', received(o.ipv6Only))
  }
  return { backlog, ipv6Only: o.ipv6Only === true }
}
