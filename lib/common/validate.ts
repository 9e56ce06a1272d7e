// Validation shared by the plugin's options and start()'s settings: every
// error names the option and the value received, as fastify's own do.
import { FST_REUSEPORT_INVALID_OPTION } from './errors'

/** How an error message shows the value it received. */
export function received (value: unknown): string {
  if (typeof value === 'string') return `'${value}'`
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value)
  return Array.isArray(value) ? 'an array' : `type ${typeof value}`
}

export function validateBacklog (value: unknown, name = 'backlog'): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
    throw new FST_REUSEPORT_INVALID_OPTION(name, 'must be a non-negative integer', received(value))
  }
  return value
}
