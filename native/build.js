'use strict'

// Builds the addon from source where no prebuilt binary fits. It is no install
// script: npm >= 11 asks for approval of every dependency's install script
// (allowScripts), pnpm 10 and Bun skip them unless trusted, so the package has
// none, and ships no binding.gyp at its root either (npm, pnpm and Bun would
// each run `node-gyp rebuild` for one). Where a prebuilt binary fits
// (prebuilds/: linux x64 and arm64, glibc and musl), nothing runs at install.
//
//   npx fastify-reuseport build       (users: lib/cli.ts runs this with --strict)
//   node native/build.js              (this repo's `prepare`: a clone builds here)
//
// - not Linux: nothing to build (only Linux balances across SO_REUSEPORT sockets);
// - a prebuilt binary (prebuilds/) or an earlier build (build/) loads: done,
//   unless --from-source (the CLI's build command) asks for a new build;
// - otherwise build from source with node-gyp, if the tools for it are there.
// On failure it prints one line and leaves it in build/install-error.txt for
// lib/common/native.ts; it exits 0 (a clone's `npm install` still completes, served by
// the cluster balancer) unless --strict.
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')
const ERROR_FILE = path.join(ROOT, 'build', 'install-error.txt')
// The package ships binding.gyp here (prepack copies it), not at its root.
const SHIPPED_GYP = path.join(__dirname, 'binding.gyp')
const GYP = path.join(ROOT, 'binding.gyp')

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
  // npm sets npm_config_node_gyp to the node-gyp it bundles (scripts and npx).
  if (process.env.npm_config_node_gyp) return [process.execPath, process.env.npm_config_node_gyp]
  const candidates = [
    () => require.resolve('node-gyp/bin/node-gyp.js'),
    // The node-gyp bundled with the npm next to this node (official builds).
    () => path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')
  ]
  for (const find of candidates) {
    try {
      const file = find()
      if (fs.existsSync(file)) return [process.execPath, file]
    } catch {}
  }
  return ['node-gyp']
}

let failed = false

function fail (what) {
  // lib/common/native.ts puts this in FST_REUSEPORT_UNSUPPORTED, with the fix.
  fs.mkdirSync(path.dirname(ERROR_FILE), { recursive: true })
  fs.writeFileSync(ERROR_FILE, what + '\n')
  process.stderr.write(`fastify-reuseport: ${what}; without the addon the plugin listens without SO_REUSEPORT and the CLI serves with Node's cluster balancer\n`)
  failed = true
}

function rebuild () {
  const borrowed = !fs.existsSync(GYP) && fs.existsSync(SHIPPED_GYP)
  if (borrowed) fs.copyFileSync(SHIPPED_GYP, GYP)
  try {
    const [cmd, ...args] = nodeGyp()
    return spawnSync(cmd, [...args, 'rebuild'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } finally {
    if (borrowed) fs.rmSync(GYP, { force: true })
  }
}

function main () {
  if (process.platform !== 'linux') return
  fs.rmSync(ERROR_FILE, { force: true })
  const fromSource = process.argv.includes('--from-source') || process.env.npm_config_build_from_source === 'true'
  const found = loadError()
  if (found === null && !fromSource) return
  const prebuilt = found ?? 'building from source as asked'
  const missing = missingTools()
  if (missing.length > 0) return fail(`${prebuilt}, and building it needs ${missing.join(', ')}`)
  const r = rebuild()
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`
  if (r.status === 0 && loadError() === null) {
    if (fromSource) process.stderr.write(`fastify-reuseport: built ${path.join(ROOT, 'build', 'Release', 'reuseport.node')}\n`)
    return
  }
  if (process.env.npm_config_loglevel === 'verbose' || process.env.npm_config_loglevel === 'silly') process.stderr.write(output)
  // node-gyp's first error line names the cause.
  const cause = r.error?.message ?? output.split('\n').find(l => /error/i.test(l))?.trim() ?? `node-gyp exited ${r.status}`
  fail(`${prebuilt}, and building it failed: ${cause.slice(0, 200)}`)
}

main()
if (failed && process.argv.includes('--strict')) process.exitCode = 1
