import dns from 'node:dns/promises'
import net from 'node:net'
import type { NativeBinding } from './native'
import { FST_REUSEPORT_INHERITED, FST_REUSEPORT_INVALID_PORT } from './errors'

/** One listening socket: a slot fd handed down by the supervisor, or one we opened. */
export interface Listener {
  fd: number
  address: string
  family: 4 | 6
  port: number
  /** listen(2) backlog: Node re-calls listen() on an inherited fd, so it must get the same value. */
  backlog: number
}

export interface ListenSpec {
  host: string
  port: number
  backlog: number
  ipv6Only: boolean
}

/** The environment variable through which a worker learns its inherited fds. */
export const LISTENERS_ENV = 'FASTIFY_REUSEPORT_LISTENERS'

export function parsePort (value: unknown): number {
  const port = typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new FST_REUSEPORT_INVALID_PORT(JSON.stringify(value) ?? String(value))
  }
  return port
}

/**
 * The addresses a host means. 'localhost' means every loopback address it
 * resolves to, as fastify binds them all (fastify lib/server.js,
 * multipleBindings; https://github.com/nodejs/node/issues/9390); any other
 * name means its first address, as net.Server.listen does.
 */
export async function resolveHost (host: string): Promise<Array<{ address: string, family: 4 | 6 }>> {
  const family = net.isIP(host)
  if (family === 4 || family === 6) return [{ address: host, family }]
  const all = await dns.lookup(host, { all: true })
  const seen = new Set<string>()
  const addresses = all
    .filter(a => !seen.has(a.address) && seen.add(a.address))
    .map(a => ({ address: a.address, family: a.family === 6 ? 6 as const : 4 as const }))
  return host === 'localhost' ? addresses : addresses.slice(0, 1)
}

/**
 * Opens one reuseport listener per address, all on one port: the first
 * address picks it when port is 0. On any error every fd opened so far is
 * closed. Extra addresses that this host cannot bind (no IPv6 loopback, say)
 * are skipped, as fastify skips them.
 */
export function openListeners (binding: NativeBinding, addresses: Array<{ address: string, family: 4 | 6 }>, spec: Omit<ListenSpec, 'host'>): Listener[] {
  const listeners: Listener[] = []
  let port = spec.port
  try {
    for (const [i, { address, family }] of addresses.entries()) {
      try {
        const made = binding.createListener(address, port, spec.backlog, spec.ipv6Only)
        port = made.port
        listeners.push({ fd: made.fd, address, family, port, backlog: spec.backlog })
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (i > 0 && (code === 'EADDRNOTAVAIL' || code === 'EAFNOSUPPORT')) continue
        throw err
      }
    }
  } catch (err) {
    closeListeners(binding, listeners)
    throw err
  }
  return listeners
}

export function closeListeners (binding: NativeBinding, listeners: Listener[]): void {
  for (const l of listeners) {
    try { binding.close(l.fd) } catch { /* already closed: nothing left to leak */ }
  }
}

/** Listeners the supervisor handed down, or null when this process runs alone. */
export function inheritedListeners (env: NodeJS.ProcessEnv = process.env): Listener[] | null {
  const raw = env[LISTENERS_ENV]
  if (raw === undefined || raw === '') return null
  let parsed: unknown
  try {
    parsed = JSON.parse(raw)
  } catch {
    throw new FST_REUSEPORT_INHERITED('not JSON')
  }
  if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every(isListener)) {
    throw new FST_REUSEPORT_INHERITED(raw)
  }
  return parsed
}

function isListener (value: unknown): value is Listener {
  if (typeof value !== 'object' || value === null) return false
  const l = value as Record<string, unknown>
  return Number.isInteger(l.fd) && (l.fd as number) >= 0 && typeof l.address === 'string' &&
    (l.family === 4 || l.family === 6) && Number.isInteger(l.port) && Number.isInteger(l.backlog)
}
