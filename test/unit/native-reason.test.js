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

t.test('the install script could not build it: what it found missing, and the packages to install', async t => {
  const installError = 'no prebuilt binary for linux-riscv64 (glibc), and building it needs make'
  t.equal(unsupportedReason({ ...linux, installError }),
    `the native addon could not be loaded: ${installError}; to fix, install python3, make and g++ (apt-get install python3 make g++) and run \`npm rebuild fastify-reuseport\``)
  t.match(unsupportedReason({ ...linux, libc: 'musl', installError }), /\(apk add python3 make g\+\+\)/, 'Alpine gets apk')
})

t.test('the install script never ran (--ignore-scripts) and no binary fits', async t => {
  t.equal(unsupportedReason(linux),
    'the native addon could not be loaded: no prebuilt binary for linux-riscv64 (glibc) and no build from source; ' +
    'to fix, run `npm rebuild fastify-reuseport` (building from source needs python3, make and g++)')
})

t.test('a binary was found but did not load', async t => {
  const loadError = 'Error relocating node.napi.glibc.node: __sprintf_chk: symbol not found'
  t.equal(unsupportedReason({ ...linux, arch: 'x64', loadError }),
    `the native addon could not be loaded (${loadError}); to fix, build it from source: ` +
    '`npm rebuild fastify-reuseport --build-from-source` (needs python3, make and g++)')
})
