import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import url from 'node:url'
import type { FastifyPluginAsync, FastifyPluginCallback, FastifyServerOptions } from 'fastify'
import { FST_REUSEPORT_APP_INVALID, FST_REUSEPORT_APP_NOT_FOUND } from '../common/errors'
import { LISTENERS_ENV } from '../common/listener'
import type { ErrorInfo } from '../common/messages'

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

/** Node's own header for a SyntaxError: "file:line", the line, a caret under the column, a blank line. */
const LOCATION = /^(?:file:\/\/)?\/.*:\d+\n.*\n *\^+.*\n\n/

/**
 * An error that stopped an app from loading, as ErrorInfo with the text
 * Node would print for it uncaught: the stack of a thrown error, and the
 * file:line and caret of a SyntaxError.
 *
 * A CommonJS SyntaxError carries its location in its stack already (the CJS
 * loader decorates it). An ES module's does not: Node keeps the location in a
 * private symbol (AppendExceptionLine in src/node_errors.cc, used by
 * decorateErrorStack in lib/internal/util.js) that only its fatal-exception
 * handler prints. So the import is repeated in a child process, whose fatal
 * output is read. A syntax error fails the module graph while it is linked,
 * before any of its modules run, so the child executes no app code (the
 * preloads, -r and -i, run again, as they must for a loader such as tsx).
 */
export async function describeLoadError (err: unknown, file: string): Promise<ErrorInfo> {
  const e = (err instanceof Error ? err : new Error(String(err))) as Error & { code?: unknown }
  const info: ErrorInfo = {
    name: e.name,
    message: e.message,
    stack: e.stack ?? `${e.name}: ${e.message}`,
    ...(typeof e.code === 'string' ? { code: e.code } : {})
  }
  if (e.name === 'SyntaxError' && !LOCATION.test(info.stack) && /node:internal\/modules\/esm\//.test(info.stack)) {
    const location = await syntaxErrorLocation(path.resolve(file), e.message)
    if (location !== null) info.stack = location + info.stack
  }
  return info
}

function syntaxErrorLocation (file: string, message: string): Promise<string | null> {
  return new Promise(resolve => {
    const env = { ...process.env }
    delete env[LISTENERS_ENV]
    const child = spawn(process.execPath, [...process.execArgv, '--input-type=module', '-e', `await import(${JSON.stringify(url.pathToFileURL(file).href)})`], {
      env, stdio: ['ignore', 'ignore', 'pipe']
    })
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d.length + stderr.length > 65536 ? '' : d })
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    child.once('error', () => { clearTimeout(timer); resolve(null) })
    child.once('close', () => {
      clearTimeout(timer)
      const at = stderr.indexOf(`SyntaxError: ${message}`)
      const header = at > 0 ? /(?:file:\/\/)?\/[^\n]*:\d+\n[^\n]*\n *\^+[^\n]*\n\n$/.exec(stderr.slice(0, at)) : null
      resolve(header === null ? null : header[0])
    })
  })
}
