'use strict'

// Installing the packed package needs nobody's approval: npm 11 (which warns
// about every dependency install script not covered by allowScripts), pnpm 10
// and Bun (which skip them unless trusted) each install it into a fresh app
// without a word about scripts or builds, compile nothing, and the installed
// CLI serves with two workers on the prebuilt addon. Each client comes from
// the npm registry (test/registry-tools.js).
const t = require('tap')
const { spawnSync } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { freePort, load, prebuildsMissing, processesWith, startCli } = require('../helpers')
const { packPackage } = require('../pack')
const { TOOLS, bunPackage, fetchPackage } = require('../registry-tools')

const why = process.platform !== 'linux' || process.arch !== 'x64'
  ? `prebuilds are made on x64 Linux, this is ${process.platform}-${process.arch}`
  : prebuildsMissing()

t.setTimeout(600000)

// What a client says when a dependency wants to run a script or a build.
const SCRIPT_WORDS = /install-scripts|allowScripts|allow-scripts|Ignored build scripts|approve-builds|trustedDependencies|Blocked \d+ postinstall|node-gyp|gyp info/i

const CLIENTS = [
  { name: 'npm 11', spec: 'npm@11', argv: dir => [process.execPath, path.join(dir, 'bin', 'npm-cli.js'), 'install', '--no-audit', '--no-fund'] },
  { name: 'pnpm 10', spec: 'pnpm@10', argv: dir => [process.execPath, path.join(dir, 'bin', 'pnpm.cjs'), 'install', '--store-dir', path.join(TOOLS, 'pnpm-store'), '--config.confirmModulesPurge=false'] },
  { name: 'Bun', spec: bunPackage('glibc'), argv: dir => [path.join(dir, 'bin', 'bun'), 'install'], env: { BUN_INSTALL_CACHE_DIR: path.join(TOOLS, 'bun-cache') } }
]

t.test('npm 11, pnpm 10 and Bun install the packed package silently, and it serves', { skip: why ?? false }, async t => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-clients-'))
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }))
  const { tarball, files } = packPackage(tmp)
  t.notOk(files.includes('binding.gyp'), 'no binding.gyp at the package root (each client would run node-gyp for one)')
  const manifest = JSON.parse(spawnSync('tar', ['-xzOf', tarball, 'package/package.json'], { encoding: 'utf8' }).stdout)
  t.same(Object.keys(manifest.scripts ?? {}).filter(s => /install|prepare/.test(s)), [], 'and no preinstall, install, postinstall or prepare script (npm 11 counts prepare for tarball installs)')

  for (const client of CLIENTS) {
    t.test(client.name, async t => {
      const tool = fetchPackage(client.spec)
      if (tool.why) return t.skip(tool.why)
      const app = path.join(tmp, client.spec.replace(/\W/g, '-'))
      fs.mkdirSync(app)
      fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, dependencies: { 'fastify-reuseport': `file:${tarball}` } }))
      fs.writeFileSync(path.join(app, 'app.js'), "module.exports = async app => { app.get('/', async () => ({ pid: process.pid })) }\n")
      const [cmd, ...args] = client.argv(tool.dir)
      const version = spawnSync(cmd, [...args.slice(0, cmd === process.execPath ? 1 : 0), '--version'], { encoding: 'utf8' }).stdout.trim()
      const t0 = Date.now()
      const r = spawnSync(cmd, args, { cwd: app, encoding: 'utf8', timeout: 240000, env: { ...process.env, ...client.env } })
      const output = `${r.stdout}${r.stderr}`
      t.equal(r.status, 0, `${client.name} (${version}) installs`, { output: r.status === 0 ? undefined : output.slice(-3000) })
      t.comment(`${client.name} ${version}: install ${Date.now() - t0} ms`)
      t.notMatch(output, SCRIPT_WORDS, 'without a word about install scripts or builds')
      const pkg = fs.realpathSync(path.join(app, 'node_modules', 'fastify-reuseport'))
      t.notOk(fs.existsSync(path.join(pkg, 'build')), 'nothing was built: no build/')

      const port = await freePort()
      const marker = `reuseport-test-${crypto.randomUUID()}`
      const sup = await startCli(['-w', '2', '-a', '127.0.0.1', '-p', String(port), 'app.js'],
        { wrap: ['sh', '-c', `cd ${JSON.stringify(app)} && shift && exec node_modules/.bin/fastify-reuseport "$@"`], env: { REUSEPORT_TEST_MARKER: marker } })
      t.teardown(async () => {
        await sup.stop('SIGKILL')
        for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
      })
      t.ok(sup.lines.some(l => l.balancer === 'reuseport'), 'the supervisor balances with reuseport: the prebuilt addon loaded')
      const res = await load({ url: `http://127.0.0.1:${port}`, durationMs: 1000, connections: 4, keepAlive: false })
      t.equal(res.failed, 0, 'no failed request')
      t.same(Object.keys(res.pids).map(Number).sort(), sup.workerPids().sort(), `two workers serve: ${JSON.stringify(res.pids)}`)
      t.equal(Object.keys(res.pids).length, 2)
      t.same(await sup.stop('SIGTERM'), { code: 0, signal: null }, 'graceful exit')
    })
  }
})
