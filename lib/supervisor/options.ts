// start()'s options, checked against the settings table (lib/supervisor/settings.ts)
// once, into the settings the supervisor runs with. Every error names the
// option and the value received.
import path from 'node:path'
import { FST_REUSEPORT_INVALID_OPTION } from '../common/errors'
import { parsePort } from '../common/listener'
import { received } from '../common/validate'
import { parseSize } from './policy'
import { TABLE, type Kind, type ResolvedSettings, type SettingOptions } from './settings'

export type { Balancer } from './settings'

/** Options of start(): the settings table's, plus the app and what the CLI's -r and -i make. */
export interface StartOptions extends SettingOptions {
  /** Path of the app file: a Fastify plugin, CommonJS or ESM. */
  app: string
  /** Node options for every worker, before the worker script: ['--require', './tracing.js'], ['--import', 'x']. */
  preload?: string[]
  /**
   * Aborting it while start() runs shuts the supervisor down, and start()
   * rejects once every worker it spawned has exited: a SIGTERM while workers
   * boot must not leave them behind.
   */
  signal?: AbortSignal
}

/** start()'s options, checked, with their defaults. */
export interface StartSettings extends ResolvedSettings {
  app: string
  preload: string[]
}

/** Checks one option's value against its kind. */
export function checkValue (name: string, kind: Kind, value: unknown): unknown {
  const bad = (what: string): never => { throw new FST_REUSEPORT_INVALID_OPTION(name, what, received(value)) }
  switch (kind.type) {
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value) || value < kind.min) bad(`must be an integer >= ${kind.min}`)
      return value
    case 'port':
      return parsePort(value)
    case 'workers':
      if (value !== 'auto' && (typeof value !== 'number' || !Number.isInteger(value) || value < 1)) bad('must be an integer >= 1')
      return value
    case 'size':
      if (typeof value === 'string') return parseSize(value) ?? bad('must be a size such as 512M or 1G')
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) bad('must be an integer >= 0')
      return value
    case 'text':
      if (typeof value !== 'string') bad('must be a string')
      return value
    case 'file':
      if (typeof value !== 'string' || value === '') bad('must be the path of a file')
      return path.resolve(value as string)
    case 'flag':
    case 'switch':
      if (typeof value !== 'boolean') bad('must be a boolean')
      return value
    case 'choice':
      if (!kind.values.includes(value as string)) bad(`must be one of ${kind.values.join(', ')}`)
      return value
    case 'list':
      if (!Array.isArray(value) || !value.every(v => typeof v === 'string')) bad('must be an array of strings')
      return value
  }
}

/** Validates start()'s options, naming the option and the value received. */
export function resolveStartOptions (options: unknown): StartSettings {
  if (typeof options !== 'object' || options === null) throw new FST_REUSEPORT_INVALID_OPTION('options', 'must be an object', received(options))
  const o = options as Record<string, unknown>
  if (typeof o.app !== 'string' || o.app === '') throw new FST_REUSEPORT_INVALID_OPTION('app', 'must be the path of an app file', received(o.app))
  const resolved: Record<string, unknown> = {
    app: path.resolve(o.app),
    preload: o.preload === undefined ? [] : checkValue('preload', { type: 'list' }, o.preload)
  }
  for (const s of TABLE) {
    if (s.option === null) continue
    const value = o[s.option]
    resolved[s.option] = value === undefined ? s.value : checkValue(s.option, s.kind, value)
  }
  return resolved as unknown as StartSettings
}
