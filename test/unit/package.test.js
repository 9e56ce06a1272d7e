'use strict'

// The published package on a machine without build tools: `npm pack` (its
// prepack makes the missing prebuilt binaries), then `npm install` of the
// tarball into a fresh app whose PATH holds node, npm and a few shell basics
// only: no cc, c++, make or python. The install compiles nothing and the
// installed CLI serves with two workers. Then the same app without a binary
// for its platform: `fastify-reuseport build` builds it with the tools, or
// prints one line saying what is missing without them, and the CLI and the
// plugin report FST_REUSEPORT_UNSUPPORTED with the fix.
const t = require('tap')
const { execFileSync, spawnSync } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { ROOT, freePort, load, prebuildsMissing, processesWith, startCli, toolchainFreePath } = require('../helpers')

const why = process.platform !== 'linux' || process.arch !== 'x64'
  ? `prebuilds are made on x64 Linux, this is ${process.platform}-${process.arch}`
  : prebuildsMissing()

// Where the Zig cache is cold (npm test warms it first), prepack's one build takes a minute or two.
t.setTimeout(600000)

t.test('npm pack, then npm install on a machine without build tools', { skip: why ?? false }, async t => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-pack-'))
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }))

  // A copy of the source, so that prepare's tsc does not rewrite dist/ under
  // the tests running next to this one; it lacks one prebuilt binary.
  const src = path.join(tmp, 'src')
  for (const entry of ['package.json', 'tsconfig.json', 'README.md', 'binding.gyp', 'index.ts', 'lib', 'native', 'scripts', 'types', 'prebuilds']) {
    fs.cpSync(path.join(ROOT, entry), path.join(src, entry), { recursive: true })
  }
  fs.rmSync(path.join(src, 'prebuilds', 'linux-arm64', 'node.napi.musl.node'))
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(src, 'node_modules'))
  let t0 = Date.now()
  const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: src, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }))[0]
  t.comment(`npm pack: ${Date.now() - t0} ms`)
  const files = packed.files.map(f => f.path)
  t.same(files.filter(f => f.startsWith('prebuilds/')).sort(), [
    'prebuilds/linux-arm64/node.napi.glibc.node', 'prebuilds/linux-arm64/node.napi.musl.node',
    'prebuilds/linux-x64/node.napi.glibc.node', 'prebuilds/linux-x64/node.napi.musl.node'
  ], 'the tarball carries the four binaries; prepack made the missing one')
  t.ok(files.includes('dist/lib/cli.js') && files.includes('native/build.js') && files.includes('native/binding.gyp'), 'and the compiled JavaScript and what `fastify-reuseport build` needs')
  t.notOk(files.includes('binding.gyp'), 'but no binding.gyp at the root: npm, pnpm and Bun would run node-gyp at install')
  t.notOk(files.some(f => f.startsWith('build/')), 'and no build/')

  const bin = toolchainFreePath(path.join(tmp, 'bin'))
  const noTools = spawnSync('sh', ['-c', 'command -v cc c++ gcc g++ clang make python3 python'], { env: { PATH: bin }, encoding: 'utf8' })
  t.equal(noTools.stdout, '', 'no compiler, make or python on that PATH')
  const env = { ...process.env, PATH: bin }

  const app = path.join(tmp, 'app')
  fs.mkdirSync(app)
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({
    name: 'app', version: '1.0.0', private: true, dependencies: { 'fastify-reuseport': `file:${path.join(tmp, packed.filename)}` }
  }))
  fs.writeFileSync(path.join(app, 'app.js'), "module.exports = async app => { app.get('/', async () => ({ pid: process.pid })) }\n")
  fs.writeFileSync(path.join(app, 'plugin.js'), `
    const app = require('fastify')({ logger: { level: 'warn' } })
    app.register(require('fastify-reuseport'))
    app.listen({ port: 0, host: '127.0.0.1' }).then(() => app.close())\n`)
  t0 = Date.now()
  const installed = spawnSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts'], { cwd: app, env, encoding: 'utf8', timeout: 120000 })
  t.equal(installed.status, 0, 'npm install succeeds', { output: installed.status === 0 ? undefined : installed.stdout + installed.stderr })
  t.comment(`npm install: ${Date.now() - t0} ms`)
  const pkg = path.join(app, 'node_modules', 'fastify-reuseport')
  t.notOk(fs.existsSync(path.join(pkg, 'build')), 'nothing was compiled: no build/')
  t.notMatch(installed.stdout + installed.stderr, /^fastify-reuseport:|install-scripts/m, 'no script ran or was asked for')

  t.test('the installed CLI serves with two workers', async t => {
    const port = await freePort()
    const marker = `reuseport-test-${crypto.randomUUID()}`
    // startCli runs `node <our cli>`: exec the installed bin instead, from the app.
    const sup = await startCli(['-w', '2', '-a', '127.0.0.1', '-p', String(port), path.join(app, 'app.js')],
      { wrap: ['sh', '-c', `cd ${JSON.stringify(app)} && shift && exec node_modules/.bin/fastify-reuseport "$@"`], env: { PATH: bin, REUSEPORT_TEST_MARKER: marker } })
    t.teardown(async () => {
      await sup.stop('SIGKILL')
      for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
    })
    t.match(fs.readFileSync(`/proc/${sup.child.pid}/cmdline`, 'utf8'), /node_modules\/\.bin\/fastify-reuseport/, 'the supervisor is the installed bin')
    const r = await load({ url: `http://127.0.0.1:${port}`, durationMs: 1000, connections: 4, keepAlive: false })
    t.equal(r.failed, 0, 'no failed request')
    t.same(Object.keys(r.pids).map(Number).sort(), sup.workerPids().sort(), `two workers serve: ${JSON.stringify(r.pids)}`)
    t.equal(Object.keys(r.pids).length, 2)
    t.same(await sup.stop('SIGTERM'), { code: 0, signal: null }, 'graceful exit')
  })

  t.test('no binary for this platform, build tools present: `npx fastify-reuseport build` builds from source', async t => {
    // What a platform without a prebuild (linux-riscv64, say) sees.
    fs.rmSync(path.join(pkg, 'prebuilds'), { recursive: true })
    const rebuilt = spawnSync('npx', ['fastify-reuseport', 'build'], { cwd: app, encoding: 'utf8', timeout: 120000 })
    t.equal(rebuilt.status, 0, 'the build command succeeds', { output: rebuilt.status === 0 ? undefined : rebuilt.stdout + rebuilt.stderr })
    t.notOk(fs.existsSync(path.join(pkg, 'binding.gyp')), 'it put back the package as it was: no binding.gyp at its root')
    t.ok(fs.existsSync(path.join(pkg, 'build', 'Release', 'reuseport.node')), 'node-gyp built build/Release/reuseport.node')
    t.notOk(fs.existsSync(path.join(pkg, 'build', 'install-error.txt')), 'and recorded no error')
    const plugin = spawnSync('node', ['plugin.js'], { cwd: app, encoding: 'utf8', timeout: 20000 })
    t.equal(plugin.status, 0)
    t.equal(plugin.stdout.trim(), '', 'the plugin loads it: no warning')
  })

  t.test('no binary for this platform and no build tools: install succeeds and says what is missing', async t => {
    fs.rmSync(path.join(pkg, 'build'), { recursive: true, force: true })
    const rebuilt = spawnSync(path.join(app, 'node_modules', '.bin', 'fastify-reuseport'), ['build'], { cwd: app, env, encoding: 'utf8', timeout: 60000 })
    t.equal(rebuilt.status, 1, '`fastify-reuseport build` exits 1')
    const lines = (rebuilt.stdout + rebuilt.stderr).trim().split('\n')
    t.equal(lines.length, 1, 'it prints one line')
    t.match(lines[0], /^fastify-reuseport: no prebuilt binary for linux-x64 \(glibc\), and building it needs python3, make, a C\+\+ compiler/)
    t.ok(fs.existsSync(path.join(pkg, 'build', 'install-error.txt')), 'and leaves it for lib/common/native.ts')

    // Without --balancer the CLI falls back to cluster round-robin (test/load/cluster.test.js);
    // asked for reuseport, it says why it cannot and how to fix it.
    const cli = spawnSync(path.join(app, 'node_modules', '.bin', 'fastify-reuseport'), ['start', '--balancer', 'reuseport', '-a', '127.0.0.1', '-p', '0', 'app.js'], { cwd: app, env, encoding: 'utf8', timeout: 20000 })
    t.not(cli.status, 0, 'the CLI exits non-zero')
    const out = (cli.stdout + cli.stderr).trim()
    t.equal(out.split('\n').length, 1, `the CLI prints one line: ${out}`)
    t.match(out, /FST_REUSEPORT_UNSUPPORTED: .*native addon could not be loaded: no prebuilt binary .* needs python3, make, a C\+\+ compiler.*; to fix, install python3, make and g\+\+ \(apt-get install python3 make g\+\+\) and run `npx fastify-reuseport build`/)

    const plugin = spawnSync('node', ['plugin.js'], { cwd: app, env, encoding: 'utf8', timeout: 20000 })
    t.equal(plugin.status, 0, 'an app with the plugin still starts')
    const warnings = plugin.stdout.trim().split('\n').map(l => JSON.parse(l)).filter(l => l.level === 40)
    t.equal(warnings.length, 1, 'with one warning')
    t.equal(warnings[0]?.code, 'FST_REUSEPORT_UNSUPPORTED')
    t.match(warnings[0]?.msg, /needs python3, make, a C\+\+ compiler.*to fix, install python3, make and g\+\+.*; listening without SO_REUSEPORT$/)
  })
})
