'use strict'

// examples/Dockerfile in a real Docker engine, built as a user would with the
// package from `npm pack`: the CLI is PID 1 and every worker serves;
// `docker kill -s HUP` under load fails no request; `docker stop -t 30` (the
// --stop-timeout the example documents) exits 0 within it.
// The base image (node:24-bookworm-slim) cannot be pulled here:
// test/docker/base-image.sh builds it once and the engine keeps it.
const t = require('tap')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { request } = require('undici')
const { ROOT, freePort, load, sleep, waitFor } = require('../helpers')
const { packPackage } = require('../pack')
const { docker, ensureEngine, whyNot } = require('../docker/engine')

const EXAMPLE = path.join(ROOT, 'examples')
const DOCKERFILE = fs.readFileSync(path.join(EXAMPLE, 'Dockerfile'), 'utf8')
// What the example documents: its drain delay and grace, and the --stop-timeout that covers them.
const STOP_TIMEOUT = Number(/--stop-timeout (\d+)/.exec(DOCKERFILE)?.[1])
const DRAIN_DELAY = Number(/FASTIFY_DRAIN_DELAY=(\d+)/.exec(DOCKERFILE)?.[1]) / 1000
const GRACE = Number(/FASTIFY_CLOSE_GRACE_DELAY=(\d+)/.exec(DOCKERFILE)?.[1]) / 1000

t.test('the Dockerfile documents a --stop-timeout that covers its drain delay + grace', async t => {
  t.ok(STOP_TIMEOUT >= DRAIN_DELAY + GRACE, `--stop-timeout ${STOP_TIMEOUT} >= ${DRAIN_DELAY} + ${GRACE}`)
  t.notMatch(DOCKERFILE, /docker run[^\n]*--init/, 'no docker run --init: the CLI is PID 1 and reaps orphans itself')
  const inline = DOCKERFILE.split('\n').filter(l => /^[A-Z]+\s/.test(l) && /\s#/.test(l))
  t.same(inline, [], 'no inline comment after an instruction (Docker would read it as arguments)')
})

// First run on a machine: debootstrap, then npm ci inside the build.
t.setTimeout(900000)

const ok = (t, r, what) => t.equal(r.status, 0, what, { output: r.status === 0 ? undefined : `${r.stdout}${r.stderr}`.slice(-3000) })

/** Workers: the processes whose parent is the container's PID 1 (the image has no ps). */
function containerProcs (name) {
  const r = docker(['exec', name, 'sh', '-c', 'for p in /proc/[0-9]*; do echo "${p#/proc/} $(cut -d" " -f4 $p/stat 2>/dev/null) $(tr "\\0" " " < $p/cmdline 2>/dev/null)"; done']) // eslint-disable-line no-template-curly-in-string
  return r.stdout.trim().split('\n').map(l => l.split(' ')).map(([pid, ppid, ...cmd]) => ({ pid: Number(pid), ppid: Number(ppid), cmd: cmd.join(' ').trim() }))
}
const workerPids = name => containerProcs(name).filter(p => p.ppid === 1 && /(^|\/)node /.test(p.cmd)).map(p => p.pid).sort((a, b) => a - b)

t.test('examples/Dockerfile in a real Docker engine', { skip: whyNot() ?? false }, async t => {
  t.teardown(await ensureEngine())
  let started = Date.now()
  const base = spawnSync('bash', [path.join(ROOT, 'test', 'docker', 'base-image.sh')], { encoding: 'utf8', timeout: 600000 })
  ok(t, base, 'the base image exists or was built')
  t.comment(`${base.stdout.trim()} (${Date.now() - started} ms)`)

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-docker-'))
  const tag = `fastify-reuseport-example:test-${process.pid}`
  const name = `fastify-reuseport-test-${process.pid}`
  t.teardown(() => {
    docker(['rm', '-f', name])
    docker(['rmi', '-f', tag])
    fs.rmSync(tmp, { recursive: true, force: true })
  })

  // The build context a user has: package.json, package-lock.json, app.js, the example's two files.
  const ctx = path.join(tmp, 'app')
  fs.mkdirSync(ctx)
  const { tarball } = packPackage(tmp)
  fs.copyFileSync(tarball, path.join(ctx, 'fastify-reuseport.tgz'))
  fs.writeFileSync(path.join(ctx, 'package.json'), JSON.stringify({ name: 'my-app', version: '1.0.0', private: true, dependencies: { 'fastify-reuseport': 'file:fastify-reuseport.tgz' } }, null, 2))
  fs.copyFileSync(path.join(EXAMPLE, 'app.js'), path.join(ctx, 'app.js'))
  fs.copyFileSync(path.join(EXAMPLE, '.dockerignore'), path.join(ctx, '.dockerignore'))
  // A stray host node_modules, which .dockerignore must keep out of the image.
  fs.mkdirSync(path.join(ctx, 'node_modules', 'fastify-reuseport'), { recursive: true })
  fs.writeFileSync(path.join(ctx, 'node_modules', 'fastify-reuseport', 'package.json'), '{"name":"stale"}')
  ok(t, spawnSync('npm', ['install', '--package-lock-only', '--no-audit', '--no-fund'], { cwd: ctx, encoding: 'utf8', timeout: 120000 }), 'npm makes package-lock.json')
  // The one line a published package does not need: the tarball must be in
  // the context before `npm ci`, as the registry would be.
  const dockerfile = DOCKERFILE
  t.match(dockerfile, /^COPY package\.json package-lock\.json \.\/$/m)
  fs.writeFileSync(path.join(ctx, 'Dockerfile'), dockerfile.replace(/^COPY package\.json package-lock\.json \.\/$/m, '$&\nCOPY fastify-reuseport.tgz ./'))

  started = Date.now()
  // Engine 20.10 from Debian: the classic builder (no buildx plugin here).
  const build = docker(['build', '--network', 'host', '-t', tag, ctx], { env: { ...process.env, DOCKER_BUILDKIT: '0' } })
  ok(t, build, 'docker build succeeds')
  t.comment(`docker build: ${Date.now() - started} ms`)
  t.notMatch(build.stdout + build.stderr, /install-scripts|allowScripts|gyp/, 'npm ci ran no install script and built nothing')

  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  // Host network (this engine runs without a bridge); loopback only.
  ok(t, docker(['run', '-d', '--name', name, '--network', 'host', '--cpus', '2', '-e', `FASTIFY_PORT=${port}`, '-e', 'FASTIFY_ADDRESS=127.0.0.1', tag]), 'docker run starts')
  try {
    await waitFor(async () => (await request(url, { reset: true }).then(r => r.body.text().then(() => r.statusCode), () => 0)) === 200, { timeout: 30000, what: 'the container serving' })
  } catch (err) {
    t.fail(`not serving: ${docker(['logs', name]).stderr}${docker(['logs', name]).stdout}`)
    throw err
  }

  t.test('the CLI is PID 1 and every worker serves', async t => {
    const pid1 = docker(['exec', name, 'cat', '/proc/1/cmdline']).stdout.split('\0').join(' ').trim()
    t.equal(pid1, 'node node_modules/fastify-reuseport/dist/lib/cli.js start app.js', 'PID 1 is the CLI, no init or shell in front')
    t.notOk(docker(['exec', name, 'test', '-e', 'node_modules/fastify-reuseport/build']).status === 0, 'nothing was compiled in the image')
    t.equal(docker(['exec', name, 'cat', 'node_modules/fastify-reuseport/package.json']).stdout.includes('"stale"'), false, 'the host node_modules stayed out (.dockerignore)')
    const workers = workerPids(name)
    t.equal(workers.length, 2, `two workers (--cpus 2, workers=auto): ${workers}`)
    const r = await load({ url, durationMs: 1500, connections: 8, keepAlive: false })
    t.equal(r.failed, 0, 'no failed request')
    t.same(Object.keys(r.pids).map(Number).sort((a, b) => a - b), workers, `every worker serves: ${JSON.stringify(r.pids)}`)
  })

  t.test('docker kill -s HUP under load fails no request', async t => {
    const before = workerPids(name)
    const loads = [
      load({ url, durationMs: 8000, connections: 4, keepAlive: true }),
      load({ url, durationMs: 8000, connections: 4, keepAlive: false })
    ]
    await sleep(1000)
    ok(t, docker(['kill', '-s', 'HUP', name]), 'docker kill -s HUP')
    const [kept, fresh] = await Promise.all(loads)
    const after = workerPids(name)
    t.equal(after.length, 2, 'two workers after the reload')
    t.notOk(after.some(p => before.includes(p)), `every worker was replaced: ${before} -> ${after}`)
    t.equal(kept.failed, 0, `keep-alive: ${kept.requests} requests, 0 failed ${JSON.stringify(kept.errors)}`)
    t.equal(fresh.failed, 0, `new connections: ${fresh.requests} requests, 0 failed ${JSON.stringify(fresh.errors)}`)
    t.ok(Object.keys(fresh.pids).some(p => after.includes(Number(p))), 'the new workers served during the run')
    t.comment(`reload under load: keep-alive ${kept.requests} requests, ${kept.failed} failed; new connections ${fresh.requests} requests, ${fresh.failed} failed`)
  })

  t.test(`docker stop -t ${STOP_TIMEOUT} exits 0 within it`, async t => {
    const t0 = Date.now()
    ok(t, docker(['stop', '-t', String(STOP_TIMEOUT), name], { timeout: (STOP_TIMEOUT + 10) * 1000 }), 'docker stop')
    const seconds = (Date.now() - t0) / 1000
    const state = JSON.parse(docker(['inspect', '-f', '{{json .State}}', name]).stdout)
    t.equal(state.ExitCode, 0, 'the container exits 0')
    t.equal(state.OOMKilled, false)
    t.ok(seconds >= DRAIN_DELAY - 0.5, `it kept serving through the ${DRAIN_DELAY} s drain delay: ${seconds.toFixed(1)} s`)
    t.ok(seconds < STOP_TIMEOUT, `before docker's SIGKILL at ${STOP_TIMEOUT} s: ${seconds.toFixed(1)} s`)
    t.match(docker(['logs', name]).stdout + docker(['logs', name]).stderr, /drain/i, 'the supervisor logged its drain')
    t.comment(`docker stop: exit ${state.ExitCode} in ${seconds.toFixed(1)} s`)
  })
})
