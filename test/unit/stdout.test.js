'use strict'

// The worker's log destination (lib/worker/stdout.ts) on real files, pipes and
// processes: a turn's lines go out in one write at the turn's end, and
// nothing is lost at exit, on a full pipe, or with the reader gone.
const t = require('tap')
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { ROOT, sleep } = require('../helpers')
const { turnBuffered } = require('../../dist/lib/worker/stdout')

const MODULE = JSON.stringify(path.join(ROOT, 'dist', 'lib', 'worker', 'stdout.js'))

function tempFile (t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-stdout-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'log')
  const fd = fs.openSync(file, 'w')
  t.teardown(() => fs.closeSync(fd))
  return { file, fd }
}

/**
 * A child that runs `body` with `d`, a turnBuffered(1) that holds every line
 * after the first until the turn ends; resolves with its exit and what it wrote.
 * fd 1 is made non-blocking first, as the worker's is once it touches
 * process.stdout (libuv sets O_NONBLOCK): a full pipe then returns EAGAIN.
 */
function child (body, { read = true } = {}) {
  const prelude = `process.stdout; const d = require(${MODULE}).turnBuffered(1, { idleMs: 60000 });`
  const p = spawn(process.execPath, ['-e', `${prelude}\n${body}`], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  p.stderr.on('data', c => { err += c })
  const readAll = () => p.stdout.on('data', c => { out += c })
  if (read) readAll()
  const done = new Promise(resolve => p.once('close', (code, signal) => resolve({ code, signal, out, err })))
  return { p, readAll, done }
}

t.test('the lines of one turn go out together once the turn has ended', async t => {
  const { file, fd } = tempFile(t)
  const d = turnBuffered(fd, { idleMs: 60000 })
  d.write('{"a":1}\n')
  t.equal(fs.readFileSync(file, 'utf8'), '{"a":1}\n', 'the first line, after nothing was written: at once')
  d.write('{"b":2}\n')
  d.write('{"c":3}\n')
  t.equal(fs.readFileSync(file, 'utf8'), '{"a":1}\n', 'the next ones are held within the turn')
  await new Promise(resolve => setImmediate(resolve))
  t.equal(fs.readFileSync(file, 'utf8'), '{"a":1}\n{"b":2}\n{"c":3}\n', 'and written, in order, after it')
  d.write('{"d":4}\n')
  d.flushSync()
  t.equal(fs.readFileSync(file, 'utf8'), '{"a":1}\n{"b":2}\n{"c":3}\n{"d":4}\n', 'flushSync writes at once')
})

t.test('a line after idleMs without a write goes out at once', async t => {
  const { file, fd } = tempFile(t)
  const d = turnBuffered(fd, { idleMs: 50 })
  d.write('first\n')
  d.write('second\n')
  t.equal(fs.readFileSync(file, 'utf8'), 'first\n', 'second held')
  await sleep(100)
  t.equal(fs.readFileSync(file, 'utf8'), 'first\nsecond\n', 'written at the end of its turn')
  d.write('third\n')
  t.equal(fs.readFileSync(file, 'utf8'), 'first\nsecond\nthird\n', 'after 100 ms idle: at once')
})

t.test('past highWaterMark the buffer is written without waiting for the turn', async t => {
  const { file, fd } = tempFile(t)
  const d = turnBuffered(fd, { highWaterMark: 16, idleMs: 60000 })
  d.write('\n')
  d.write('0123456789\n')
  t.equal(fs.readFileSync(file, 'utf8'), '\n', 'under the mark: held')
  d.write('abcdefghij\n')
  t.equal(fs.readFileSync(file, 'utf8'), '\n0123456789\nabcdefghij\n', 'over it: written')
})

t.test('flush(cb), the way pino calls it', async t => {
  const { file, fd } = tempFile(t)
  const d = turnBuffered(fd, { idleMs: 60000 })
  d.write('w\n')
  d.write('x\n')
  t.equal(fs.readFileSync(file, 'utf8'), 'w\n')
  await new Promise(resolve => d.flush(resolve))
  t.equal(fs.readFileSync(file, 'utf8'), 'w\nx\n')
})

t.test('process.exit in the same turn loses nothing', async t => {
  const r = await child("d.write('first\\n'); d.write('before exit\\n'); process.exit(3)").done
  t.equal(r.code, 3)
  t.equal(r.out, 'first\nbefore exit\n')
})

t.test('an uncaught exception in the same turn loses nothing', async t => {
  const r = await child("d.write('first\\n'); d.write('before the throw\\n'); throw new Error('boom')").done
  t.equal(r.code, 1)
  t.equal(r.out, 'first\nbefore the throw\n')
  t.match(r.err, /Error: boom/)
})

t.test('lines logged in an exit listener go out', async t => {
  const r = await child("d.write('first\\n'); process.on('exit', () => { d.write('exit 1\\n'); d.write('exit 2\\n') }); setTimeout(() => { d.write('last\\n'); process.exit(0) }, 20)").done
  t.equal(r.code, 0)
  t.equal(r.out, 'first\nlast\nexit 1\nexit 2\n')
})

t.test('a full pipe: the writer waits for the reader, and every line arrives', async t => {
  // 2 MiB in one turn, while nobody reads the pipe for 300 ms: fd 1 is
  // non-blocking (O_NONBLOCK, 04000 in /proc's octal flags), so the writes
  // meet EAGAIN and must be retried.
  const line = JSON.stringify({ msg: 'x'.repeat(1000) }) + '\n'
  const c = child(`const flags = /flags:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/fdinfo/1', 'utf8'))[1]; process.stderr.write('flags ' + flags + ' '); const line = ${JSON.stringify(line)}; for (let i = 0; i < 2048; i++) d.write(line); setImmediate(() => process.stderr.write('flushed'))`, { read: false })
  await sleep(300)
  c.readAll()
  const r = await c.done
  t.equal(r.code, 0)
  t.match(r.err, /flushed/)
  const flags = /flags (\d+)/.exec(r.err)?.[1]
  t.ok(flags && (parseInt(flags, 8) & 0o4000) !== 0, `fd 1 is non-blocking (flags ${flags})`)
  const lines = r.out.split('\n')
  t.equal(lines.pop(), '', 'ends with a whole line')
  t.equal(lines.length, 2048, 'every line')
  t.ok(lines.every(l => l === line.slice(0, -1)), 'none cut or spliced')
})

t.test('the reader gone: writes are dropped, the writer keeps running', async t => {
  const c = child("let n = 0; const tick = () => { for (let i = 0; i < 100; i++) d.write('line\\n'); if (++n < 20) setTimeout(tick, 10); else { process.stderr.write('still here'); } }; tick()", { read: false })
  c.p.stdout.destroy()
  const r = await c.done
  t.equal(r.code, 0, 'no crash on EPIPE')
  t.equal(r.signal, null)
  t.match(r.err, /still here/)
})
