'use strict'

// Version skew against a real earlier build of this package: the last commit
// before the control protocol was versioned, taken with git archive and
// compiled here with this checkout's TypeScript (its addon is this one's, a
// superset of the earlier exports). Needs git and the repository; skips
// elsewhere and says why.
const t = require('tap')
const { execFileSync } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { request } = require('undici')
const { FIXTURES, ROOT, freePort, load, processesWith, sleep, startCli, waitFor } = require('../helpers')

const app = path.join(FIXTURES, 'app.js')
const linesMatching = (sup, re) => sup.lines.filter(l => typeof l.msg === 'string' && re.test(l.msg))

function earlierCommit () {
  try {
    const first = execFileSync('git', ['-C', ROOT, 'log', '-S', 'export const PROTOCOL', '--format=%H', '--', 'lib/common/messages.ts'], { encoding: 'utf8' }).trim().split('\n').pop()
    return first ? execFileSync('git', ['-C', ROOT, 'rev-parse', `${first}^`], { encoding: 'utf8' }).trim() : null
  } catch {
    return null
  }
}

const commit = earlierCommit()
const skip = commit === null ? 'needs git and this repository\'s history to build the earlier release' : false
if (skip) t.comment(`skipping: ${skip}`)

/** A package directory: node_modules linked, this checkout's addon. */
function packageDir (t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'frp-versions-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.mkdirSync(path.join(dir, 'build', 'Release'), { recursive: true })
  fs.copyFileSync(path.join(ROOT, 'build', 'Release', 'reuseport.node'), path.join(dir, 'build', 'Release', 'reuseport.node'))
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'))
  return dir
}

let earlierDist = null
/** The earlier release's dist/, built once. */
function buildEarlier (t) {
  if (earlierDist !== null) return earlierDist
  const src = fs.mkdtempSync(path.join(os.tmpdir(), 'frp-earlier-'))
  t.context.cleanup = () => fs.rmSync(src, { recursive: true, force: true })
  execFileSync('sh', ['-c', `git -C "${ROOT}" archive ${commit} | tar -x -C "${src}"`])
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(src, 'node_modules'))
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(src, 'tsconfig.json')], { stdio: 'inherit' })
  earlierDist = path.join(src, 'dist')
  return earlierDist
}

/** What npm update does to dist/: new files in place, under a running supervisor. */
function replaceDist (dir, from, edit = null) {
  fs.rmSync(path.join(dir, 'dist'), { recursive: true, force: true })
  fs.cpSync(from, path.join(dir, 'dist'), { recursive: true })
  if (edit) edit(path.join(dir, 'dist'))
}

/** A release two protocol versions ahead of the earlier one: this build with PROTOCOL 3. */
const protocol3 = dist => {
  const file = path.join(dist, 'lib', 'common', 'messages.js')
  const text = fs.readFileSync(file, 'utf8')
  if (!/exports\.PROTOCOL = 2;/.test(text)) throw new Error('PROTOCOL not found in messages.js')
  fs.writeFileSync(file, text.replace('exports.PROTOCOL = 2;', 'exports.PROTOCOL = 3;'))
}

async function start (t, dir, args = []) {
  const port = await freePort()
  const marker = `reuseport-versions-${crypto.randomUUID()}`
  const sup = await startCli(['-a', '127.0.0.1', '-p', String(port), ...args, app], { env: { REUSEPORT_TEST_MARKER: marker }, cli: path.join(dir, 'dist', 'lib', 'cli.js') })
  t.teardown(async () => {
    await sup.stop('SIGKILL')
    for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
  })
  return { sup, url: `http://127.0.0.1:${port}` }
}

t.test('against the earlier release', { skip }, async t => {
  t.teardown(() => t.context.cleanup?.())
  const earlier = buildEarlier(t)
  t.comment(`earlier release: ${commit.slice(0, 12)}`)

  t.test('an earlier supervisor, SIGHUP onto this dist/: protocol 1 is accepted, 0 failed', async t => {
    const dir = packageDir(t)
    replaceDist(dir, earlier)
    const { sup, url } = await start(t, dir, ['-w', '2'])
    replaceDist(dir, path.join(ROOT, 'dist'))
    const pending = load({ url, durationMs: 4000, connections: 4, keepAlive: true })
    await sleep(500)
    sup.child.kill('SIGHUP')
    await waitFor(() => linesMatching(sup, /^reload: all 2 slots replaced$/).length === 1, { timeout: 20000, what: 'the reload' })
    const r = await pending
    t.same({ failed: r.failed, errors: r.errors }, { failed: 0, errors: {} }, `0 failed of ${r.requests}`)
  })

  t.test('an earlier supervisor, SIGHUP onto a dist/ two protocols ahead: one clear line, the old workers keep serving, no hang', async t => {
    const dir = packageDir(t)
    replaceDist(dir, earlier)
    const { sup, url } = await start(t, dir, ['-w', '2'])
    const before = sup.workerPids()
    replaceDist(dir, path.join(ROOT, 'dist'), protocol3)
    const at = Date.now()
    sup.child.kill('SIGHUP')
    const failed = await waitFor(() => linesMatching(sup, /^reload: .*reload stopped$/)[0], { timeout: 10000, what: 'the reload to fail' })
    t.ok(Date.now() - at < 5000, `failed in ${Date.now() - at} ms, not at the ready timeout`)
    t.match(failed.msg, /^reload: slot 1 of 2: Worker for slot 1 failed to start: Control protocol mismatch: the supervisor speaks control protocol 1, this side speaks 3 and accepts 2 to 3; .* \(FST_REUSEPORT_PROTOCOL\); keeping worker \d+, reload stopped$/, failed.msg)
    t.same(sup.workerPids().sort(), before.sort(), 'the old workers serve')
    t.equal((await request(url)).statusCode, 200)
  })

  t.test('this supervisor, SIGHUP onto a dist/ two protocols ahead: its reload fails with FST_REUSEPORT_PROTOCOL', async t => {
    const dir = packageDir(t)
    replaceDist(dir, path.join(ROOT, 'dist'))
    const { sup, url } = await start(t, dir, ['-w', '2'])
    const before = sup.workerPids()
    // A worker at 3 accepts this supervisor's 2, but this supervisor does not accept 3.
    replaceDist(dir, path.join(ROOT, 'dist'), protocol3)
    sup.child.kill('SIGHUP')
    const failed = await waitFor(() => linesMatching(sup, /^reload: .*reload stopped$/)[0], { timeout: 10000, what: 'the reload to fail' })
    t.match(failed.msg, /^reload: slot 1 of 2: Control protocol mismatch: worker \d+ for slot 1 speaks control protocol 3, this side speaks 2 and accepts 1 to 2; /, failed.msg)
    t.equal(failed.err?.code, 'FST_REUSEPORT_PROTOCOL')
    t.same(sup.workerPids().sort(), before.sort(), 'the old workers serve')
    t.equal((await request(url)).statusCode, 200)
  })

  t.test('this supervisor, SIGUSR2 onto the earlier release (no in-place upgrade there): refused by the preflight, serving on', async t => {
    const dir = packageDir(t)
    replaceDist(dir, path.join(ROOT, 'dist'))
    const { sup, url } = await start(t, dir, ['-w', '2'])
    const pid = sup.child.pid
    replaceDist(dir, earlier)
    const pending = load({ url, durationMs: 2500, connections: 4, keepAlive: true })
    await sleep(300)
    sup.child.kill('SIGUSR2')
    const failed = await waitFor(() => linesMatching(sup, /^upgrade: Upgrade failed/)[0], { timeout: 10000, what: 'the refusal' })
    t.match(failed.msg, /the new code failed its preflight \(exit 2\): FST_REUSEPORT_INVALID_ARGUMENT: unknown command '--preflight'/, failed.msg)
    const r = await pending
    t.equal(r.failed, 0, `0 failed of ${r.requests}`)
    t.equal(sup.child.pid, pid)
  })
})
