// The package's entry points, by its own name (Node resolves a package's
// self-reference through "exports"), from ESM and CommonJS.
import t from 'tap'
import { createRequire } from 'node:module'
import reuseport, { fastifyReuseport, start, steerProgram } from 'fastify-reuseport'

const require = createRequire(import.meta.url)

t.test('import and require give the plugin', async t => {
  const cjs = require('fastify-reuseport')
  t.type(reuseport, 'function')
  t.equal(cjs, reuseport, 'require() is the plugin itself')
  t.equal(cjs.default, reuseport, 'with a default export')
  t.equal(fastifyReuseport, reuseport, 'and a named one')
  t.equal(reuseport[Symbol.for('plugin-meta')].name, 'fastify-reuseport')
  t.equal(reuseport[Symbol.for('plugin-meta')].fastify, '5.x')
  t.type(start, 'function')
  t.type(steerProgram, 'function')
})
