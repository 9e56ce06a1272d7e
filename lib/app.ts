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
  const mod = await import(url.pathToFileURL(resolved).href) as Record<string, unknown>
  const cjs = mod.default as Record<string, unknown> | undefined
  const candidate = typeof cjs === 'object' && cjs !== null && typeof cjs.default === 'function' ? cjs.default : cjs
  if (typeof candidate !== 'function') {
    throw new FST_REUSEPORT_APP_INVALID(resolved, candidate === undefined ? 'no default export' : candidate === null ? 'null' : `a value of type ${typeof candidate}`)
  }
  const options = (mod.options ?? (typeof cjs === 'function' || typeof cjs === 'object' ? (cjs as Record<string, unknown> | null)?.options : undefined)) as Partial<FastifyServerOptions> | undefined
  return { plugin: candidate as FastifyPluginAsync, options }
}
