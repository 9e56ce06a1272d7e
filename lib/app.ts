import fs from 'node:fs'
import path from 'node:path'
import url from 'node:url'
import type { FastifyPluginAsync, FastifyPluginCallback, FastifyServerOptions } from 'fastify'
import { FST_REUSEPORT_APP_INVALID, FST_REUSEPORT_APP_NOT_FOUND } from './errors'

export interface LoadedApp {
  plugin: FastifyPluginAsync | FastifyPluginCallback
  /** The app's exported `options` (fastify-cli's -o). */
  options: Partial<FastifyServerOptions> | undefined
}

/**
 * Loads an app file the way fastify-cli does: CommonJS or ESM, the plugin as
 * module.exports or the default export, and its exported `options`.
 */
export async function loadApp (file: string): Promise<LoadedApp> {
  const resolved = path.resolve(file)
  if (!fs.existsSync(resolved)) throw new FST_REUSEPORT_APP_NOT_FOUND(resolved)
  // import() loads CommonJS too (module.exports becomes the default export).
  const mod = await import(url.pathToFileURL(resolved).href) as { default?: unknown, options?: unknown }
  // CommonJS compiled from ESM (TypeScript, Babel) keeps the plugin at .default.
  const exported = mod.default as { default?: unknown, options?: unknown } | null | undefined
  const plugin = typeof exported?.default === 'function' ? exported.default : exported
  if (typeof plugin !== 'function') {
    throw new FST_REUSEPORT_APP_INVALID(resolved, plugin === undefined ? 'no default export' : plugin === null ? 'null' : `a value of type ${typeof plugin}`)
  }
  const options = (mod.options ?? exported?.options) as Partial<FastifyServerOptions> | undefined
  return { plugin: plugin as FastifyPluginAsync, options }
}
