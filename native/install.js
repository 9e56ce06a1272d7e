'use strict'

// npm's install script. It never fails an install: npm rolls back the whole
// install when a dependency's script exits non-zero, so a missing compiler
// would also take fastify away. Instead, where the addon cannot exist, the
// plugin listens without SO_REUSEPORT and the CLI says why (lib/native.ts),
// from the one line this script leaves in build/install-error.txt.
//
// - not Linux: nothing to build (only Linux balances across SO_REUSEPORT sockets);
// - a prebuilt binary (prebuilds/) or an earlier build (build/) loads: done;
// - otherwise build from source with node-gyp, if the tools for it are there.
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')
const ERROR_FILE = path.join(ROOT, 'build', 'install-error.txt')

const PROBE = `
  const file = require('node-gyp-build').path(process.argv[1])
  try { require(file) } catch (err) { throw new Error(require('node:path').relative(process.argv[1], file) + ' did not load: ' + err.message) }`

/** null when the addon loads; else why not, in a few words. */
function loadError () {
  // In a child process: a binary for the wrong libc may not just throw.
  const r = spawnSync(process.execPath, ['-e', PROBE, ROOT], { cwd: ROOT, encoding: 'utf8', timeout: 30000 })
  if (r.status === 0) return null
  const message = /^Error: (.*)$/m.exec(r.stderr ?? '')?.[1] ?? `exit ${r.status}`
  return message.startsWith('No native build was found') ? `no prebuilt binary for linux-${process.arch} (${libc()})` : message.slice(0, 200)
}

// As node-gyp-build tells them apart: Alpine, or LIBC=musl, is musl.
function libc () {
  return process.env.LIBC || (fs.existsSync('/etc/alpine-release') ? 'musl' : 'glibc')
}

function onPath (cmd) {
  return (process.env.PATH ?? '').split(path.delimiter).some(dir => {
    try {
      fs.accessSync(path.join(dir || '.', cmd), fs.constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}

/** What node-gyp needs that this machine lacks: the words for the one line. */
function missingTools () {
  const missing = []
  if (!['python3', 'python'].some(onPath)) missing.push('python3')
  if (!onPath('make')) missing.push('make')
  if (!['c++', 'g++', 'clang++'].some(onPath)) missing.push('a C++ compiler (g++ or clang++)')
  return missing
}

function nodeGyp () {
  // npm sets npm_config_node_gyp to the node-gyp it bundles.
  if (process.env.npm_config_node_gyp) return [process.execPath, process.env.npm_config_node_gyp]
  try {
    return [process.execPath, require.resolve('node-gyp/bin/node-gyp.js')]
  } catch {
    return ['node-gyp']
  }
}

function fail (what) {
  // lib/native.ts puts this in FST_REUSEPORT_UNSUPPORTED, with the fix.
  fs.mkdirSync(path.dirname(ERROR_FILE), { recursive: true })
  fs.writeFileSync(ERROR_FILE, what + '\n')
  process.stderr.write(`fastify-reuseport: ${what}; installed without the addon: the plugin listens without SO_REUSEPORT and the CLI will not start\n`)
}

function main () {
  if (process.platform !== 'linux') return
  fs.rmSync(ERROR_FILE, { force: true })
  const prebuilt = process.env.npm_config_build_from_source === 'true' ? 'building from source as asked' : loadError()
  if (prebuilt === null) return
  const missing = missingTools()
  if (missing.length > 0) return fail(`${prebuilt}, and building it needs ${missing.join(', ')}`)
  const [cmd, ...args] = nodeGyp()
  const r = spawnSync(cmd, [...args, 'rebuild'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`
  if (r.status === 0 && loadError() === null) return
  if (process.env.npm_config_loglevel === 'verbose' || process.env.npm_config_loglevel === 'silly') process.stderr.write(output)
  // node-gyp's first error line names the cause.
  const cause = r.error?.message ?? output.split('\n').find(l => /error/i.test(l))?.trim() ?? `node-gyp exited ${r.status}`
  fail(`${prebuilt}, and building it failed: ${cause.slice(0, 200)}`)
}

main()
