'use strict'

// The text of FST_REUSEPORT_UNSUPPORTED: what is wrong, then the fix, for each
// way the addon can be missing (a pure function; the real cases run in
// test/unit/package.test.js and test/unit/plugin.test.js).
const t = require('tap')
const { unsupportedReason } = require('../../dist/lib/common/native')

const linux = { platform: 'linux', arch: 'riscv64', libc: 'glibc', loadError: 'No native build was found for platform=linux arch=riscv64 runtime=node abi=127 uv=1 libc=glibc node=24.21.0', installError: null }

t.test('not Linux: nothing to fix but the platform', async t => {
  for (const platform of ['darwin', 'win32', 'freebsd']) {
    t.equal(unsupportedReason({ ...linux, platform, loadError: null }),
      `SO_REUSEPORT balances connections across processes on Linux only, not on ${platform}: deploy on Linux to use it`)
  }
})

t.test('`fastify-reuseport build` could not build it: what it found missing, and the packages to install', async t => {
  const installError = 'no prebuilt binary for linux-riscv64 (glibc), and building it needs make'
  t.equal(unsupportedReason({ ...linux, installError }),
    `the native addon could not be loaded: ${installError}; to fix, install python3, make and g++ (apt-get install python3 make g++) and run \`npx fastify-reuseport build\``)
  t.match(unsupportedReason({ ...linux, libc: 'musl', installError }), /\(apk add python3 make g\+\+\)/, 'Alpine gets apk')
})

t.test('no binary fits and none was built (installing runs no script)', async t => {
  t.equal(unsupportedReason(linux),
    'the native addon could not be loaded: no prebuilt binary for linux-riscv64 (glibc); ' +
    'to fix, build it from source: `npx fastify-reuseport build` (needs python3, make and g++)')
})

t.test('a binary was found but did not load', async t => {
  const loadError = 'Error relocating node.napi.glibc.node: __sprintf_chk: symbol not found'
  t.equal(unsupportedReason({ ...linux, arch: 'x64', loadError }),
    `the native addon could not be loaded (${loadError}); to fix, build it from source: ` +
    '`npx fastify-reuseport build` (needs python3, make and g++)')
})
