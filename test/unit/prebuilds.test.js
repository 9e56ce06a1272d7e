'use strict'

// The prebuilt binaries npm pack ships (prebuilds/, made by native/prebuild.mjs):
// - the arm64 glibc one serves a request on an arm64 Node, under qemu-user;
// - the musl ones ask for no glibc symbol version (checked with readelf, not
//   run: there is no musl Node here), the glibc ones for nothing newer than 2.17;
// - each exports the N-API entry points only.
// The x64 glibc one runs the addon and plugin tests on every Node line:
// test/unit/node-versions.test.js.
const t = require('tap')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { request } = require('undici')
const { ROOT, hasCommand, nodeBinary, prebuildsMissing, spawnUntil } = require('../helpers')

const missing = prebuildsMissing()
const prebuilt = (dir, libc) => path.join(ROOT, 'prebuilds', dir, `node.napi.${libc}.node`)

const readelf = (...args) => execFileSync('readelf', ['-W', ...args], { encoding: 'utf8' })

t.test('what each binary needs from the system (readelf)', { skip: missing ?? (hasCommand('readelf') ? false : 'readelf is missing (Debian package binutils)') }, async t => {
  for (const [dir, machine] of [['linux-x64', 'Advanced Micro Devices X86-64'], ['linux-arm64', 'AArch64']]) {
    for (const libc of ['glibc', 'musl']) {
      const file = prebuilt(dir, libc)
      const name = path.relative(ROOT, file)
      t.equal(/Machine:\s+(.*)/.exec(readelf('-h', file))[1].trim(), machine, `${name}: ${machine}`)
      const needed = [...readelf('-d', file).matchAll(/\(NEEDED\)\s+Shared library: \[(.*)\]/g)].map(m => m[1])
      const versions = [...new Set(readelf('-V', '--dyn-syms', file).match(/GLIBC_[\d.]+/g) ?? [])]
      if (libc === 'musl') {
        t.same(needed, ['libc.so'], `${name} needs musl's libc.so only`)
        t.same(versions, [], `${name} asks for no GLIBC_ symbol version`)
      } else {
        t.notOk(needed.some(l => /libstdc\+\+|libc\+\+|libnode/.test(l)), `${name} links no C++ runtime and no libnode: ${needed.join(', ')}`)
        const newest = versions.map(v => v.slice(6).split('.').map(Number)).sort((a, b) => a[0] - b[0] || a[1] - b[1] || (a[2] ?? 0) - (b[2] ?? 0)).at(-1)
        t.ok(newest[0] === 2 && newest[1] <= 17, `${name} needs glibc ${newest.join('.')} at most (floor 2.17): ${versions.join(' ')}`)
      }
      const exported = readelf('--dyn-syms', file).split('\n')
        .map(l => l.trim().split(/\s+/)).filter(f => f[4] === 'GLOBAL' && f[6] !== 'UND').map(f => f[7]).sort()
      t.same(exported, ['napi_register_module_v1', 'node_api_module_get_api_version_v1'], `${name} exports the N-API entry points only`)
    }
  }
})

// Debian names it qemu-aarch64-static; some distributions ship qemu-aarch64 only.
const QEMU = ['qemu-aarch64-static', 'qemu-aarch64'].find(hasCommand)

function qemuWhy () {
  if (missing) return missing
  if (QEMU === undefined) return 'qemu-aarch64-static is missing (Debian package qemu-user-static)'
  if (!fs.existsSync('/usr/aarch64-linux-gnu/lib/libc.so.6')) return 'no arm64 glibc in /usr/aarch64-linux-gnu (Debian package libc6-arm64-cross)'
  if (!fs.existsSync('/usr/aarch64-linux-gnu/lib/libstdc++.so.6')) return 'no arm64 libstdc++ for Node in /usr/aarch64-linux-gnu (Debian package libstdc++6-arm64-cross)'
  return null
}

const qemu = qemuWhy()
const arm64Node = qemu === null ? nodeBinary(22, 'arm64') : { bin: null, why: qemu }

// Loads the addon the way the package does (node-gyp-build, from prebuilds/
// only), opens a listener with it and serves HTTP on it.
const SERVE = `
  const http = require('node:http')
  const { loadNative } = require(${JSON.stringify(path.join(ROOT, 'dist', 'lib', 'common', 'native.js'))})
  const { binding, reason } = loadNative()
  if (binding === null) throw new Error(reason)
  const { fd, port } = binding.createListener('127.0.0.1', 0, 64, false)
  const file = require('node-gyp-build').path(${JSON.stringify(ROOT)})
  http.createServer((req, res) => res.end(JSON.stringify({ arch: process.arch, pid: process.pid })))
    .listen({ fd }, () => console.log(JSON.stringify({ port, file })))
`

/** arm64 Node under qemu-user with the prebuilt binaries only; `ready` resolves with the first line it prints, as JSON. */
function arm64Spawn (args, env) {
  return spawnUntil('arm64 node', [QEMU, '-L', '/usr/aarch64-linux-gnu', arm64Node.bin, ...args], { cwd: ROOT, env: { ...process.env, PREBUILDS_ONLY: '1', ...env } },
    out => out.includes('\n') && JSON.parse(out.split('\n')[0]))
}

t.test('the arm64 glibc binary serves a request on arm64 Node under qemu-user', { skip: arm64Node.why ?? false }, async t => {
  const { child, ready: started } = arm64Spawn(['-e', SERVE], {})
  t.teardown(() => child.kill('SIGKILL'))
  const ready = await started
  t.equal(path.relative(ROOT, ready.file), 'prebuilds/linux-arm64/node.napi.glibc.node', 'node-gyp-build picked the arm64 glibc binary')
  const res = await request(`http://127.0.0.1:${ready.port}/`)
  t.same(await res.body.json(), { arch: 'arm64', pid: child.pid }, 'an arm64 process served the request on the listener it made')
})

t.test('the plugin on arm64 Node under qemu-user', { skip: arm64Node.why ?? false }, async t => {
  const { child, ready: started, output } = arm64Spawn([path.join(ROOT, 'test', 'fixtures', 'serve.js')], { LISTEN: JSON.stringify({ port: 0, host: '127.0.0.1' }) })
  t.teardown(() => child.kill('SIGKILL'))
  const ready = await started
  t.notOk(ready.error, `the plugin listens: ${JSON.stringify(ready)}`)
  t.notMatch(output(), /FST_REUSEPORT_UNSUPPORTED/, 'with the addon, not the fallback')
  const res = await request(`http://127.0.0.1:${ready.listening[0].port}/`)
  t.same(await res.body.json(), { pid: child.pid }, 'and serves')
})
