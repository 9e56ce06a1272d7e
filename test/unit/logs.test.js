'use strict'

// The line forwarder with real processes and real pipes: writer processes
// write 8–24 KiB JSON lines into their own pipes, the forwarder writes into a
// FIFO that a slow reader process drains.
const t = require('tap')
const { spawn, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { Writable } = require('node:stream')
const { FIXTURES, sleep } = require('../helpers')
const { createLineForwarder } = require('../../dist/lib/supervisor/logs')

/** promise, or fallback once ms have passed; the timer is cleared either way. */
function within (promise, ms, fallback) {
  let timer
  return Promise.race([promise, new Promise(resolve => { timer = setTimeout(() => resolve(fallback), ms) })]).finally(() => clearTimeout(timer))
}

const exited = child => new Promise(resolve => child.once('exit', (code, signal) => resolve({ code, signal })))

function writer (env) {
  return spawn(process.execPath, [path.join(FIXTURES, 'line-writer.js')], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } })
}

/**
 * A FIFO read by test/fixtures/slow-reader.js; dest is its write end opened as
 * Node opens a piped stdout (a non-blocking net.Socket over the pipe).
 */
async function slowFifo (t, env = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reuseport-logs-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const fifo = path.join(dir, 'out')
  execFileSync('mkfifo', [fifo])
  const reader = spawn(process.execPath, [path.join(FIXTURES, 'slow-reader.js'), fifo], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } })
  t.teardown(() => reader.kill('SIGKILL'))
  let out = ''
  reader.stdout.on('data', d => { out += d })
  const summary = exited(reader).then(() => out === '' ? null : JSON.parse(out))
  let fd
  for (let i = 0; ; i++) {
    try {
      // Non-blocking, so that it fails (ENXIO) instead of hanging until the reader has it open.
      fd = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK)
      break
    } catch (err) {
      if (err.code !== 'ENXIO' || i > 200) throw err
      await sleep(10)
    }
  }
  const dest = new net.Socket({ fd, readable: false, writable: true })
  return { dest, reader, summary }
}

t.test('three writers of 8–24 KiB lines into a slow pipe: every line arrives whole, in order, with bounded buffering', async t => {
  const { dest, summary } = await slowFifo(t, { KEEP: '1' })
  const forwarder = createLineForwarder(dest)
  const writers = ['a', 'b', 'c'].map(w => writer({ WRITER: w, LINES: '150' }))
  for (const w of writers) forwarder.add(w.stdout)
  t.equal(forwarder.sources, 3)
  let maxBuffered = 0
  let sawPaused = false
  const sampler = setInterval(() => {
    maxBuffered = Math.max(maxBuffered, dest.writableLength)
    sawPaused ||= writers.some(w => w.stdout.isPaused())
  }, 5)
  const results = await Promise.all(writers.map(exited))
  await forwarder.ended()
  clearInterval(sampler)
  t.same(results, [0, 1, 2].map(() => ({ code: 0, signal: null })), 'every writer finished')
  t.equal(forwarder.sources, 0)
  dest.end()
  const s = await summary
  t.equal(s.invalid, 0, `no spliced line (${JSON.stringify(s.badSamples)})`)
  t.equal(s.lines, 450, '450 lines')
  t.ok(s.bytes > 450 * 8192, `${(s.bytes / 1e6).toFixed(1)} MB through a reader at 4 KiB per 2 ms`)
  for (const w of ['a', 'b', 'c']) {
    t.same(s.parsed.filter(p => p.w === w).map(p => p.i), Array.from({ length: 150 }, (_, i) => i), `writer ${w}: its lines in order`)
  }
  t.ok(sawPaused, 'sources were paused while the destination was full')
  // Without backpressure the whole 7 MB would sit in dest's buffer.
  t.ok(maxBuffered < 1024 * 1024, `at most ${(maxBuffered / 1024).toFixed(0)} KiB buffered in the forwarder's destination`)
  t.equal(forwarder.cut, 0)
})

t.test('without the forwarder, writers sharing one pipe splice their lines (the fault this fixes)', async t => {
  const { dest, summary } = await slowFifo(t)
  const fd = dest._handle.fd
  const writers = ['a', 'b', 'c'].map(w => spawn(process.execPath, [path.join(FIXTURES, 'line-writer.js')], {
    stdio: ['ignore', fd, 'inherit'], env: { ...process.env, WRITER: w, LINES: '150' }
  }))
  await Promise.all(writers.map(exited))
  dest.destroy()
  const s = await summary
  t.ok(s.invalid > 0, `${s.invalid} of ${s.lines} lines spliced`)
})

function collect () {
  const chunks = []
  const dest = new Writable({ write (chunk, _, cb) { chunks.push(chunk); cb() } })
  return { dest, text: () => Buffer.concat(chunks).toString(), writes: () => chunks.map(String) }
}

t.test('a source\'s last partial line goes out, with a newline, when it ends', async t => {
  const { dest, text } = collect()
  const forwarder = createLineForwarder(dest)
  const child = spawn(process.execPath, ['-e', 'process.stdout.write(\'{"a":1}\\n{"b":\'); setTimeout(() => process.stdout.write(\'2}\'), 50)'], { stdio: ['ignore', 'pipe', 'inherit'] })
  forwarder.add(child.stdout)
  await exited(child)
  await forwarder.ended()
  t.equal(text(), '{"a":1}\n{"b":2}\n')
})

t.test('a runaway line without newline is cut at maxLineLength, nothing lost, no other line mixed in', async t => {
  const { dest, text, writes } = collect()
  const forwarder = createLineForwarder(dest, { maxLineLength: 10000 })
  const runaway = spawn(process.execPath, ['-e', 'process.stdout.write("r".repeat(50000)); setTimeout(() => process.stdout.write("R\\n"), 50)'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const other = spawn(process.execPath, ['-e', 'const t = setInterval(() => process.stdout.write("{\\"o\\":1}\\n"), 5); setTimeout(() => clearInterval(t), 100)'], { stdio: ['ignore', 'pipe', 'inherit'] })
  forwarder.add(runaway.stdout)
  forwarder.add(other.stdout)
  await Promise.all([exited(runaway), exited(other)])
  await forwarder.ended()
  const lines = text().split('\n').slice(0, -1)
  const pieces = lines.filter(l => l.startsWith('r') || l === 'R')
  t.equal(forwarder.cut, 5, '50000 bytes: 5 cuts')
  t.equal(pieces.join(''), 'r'.repeat(50000) + 'R', 'every byte of the runaway line arrived, in order')
  t.ok(pieces.slice(0, -1).every(p => p.length === 10000), `pieces of ${pieces.map(p => p.length).join(', ')} bytes: cut every 10000 bytes`)
  t.ok(lines.filter(l => !pieces.includes(l)).every(l => l === '{"o":1}'), 'the other source\'s lines stay whole')
  t.ok(writes().every(w => w.endsWith('\n')), 'every write to dest ends a line')
})

t.test('when dest breaks (EPIPE), sources are still read to their end, so writers never block', async t => {
  const { dest, reader } = await slowFifo(t)
  const forwarder = createLineForwarder(dest)
  const writers = ['a', 'b'].map(w => writer({ WRITER: w, LINES: '300' }))
  for (const w of writers) forwarder.add(w.stdout)
  await sleep(200)
  reader.kill('SIGKILL')
  const results = await within(Promise.all(writers.map(exited)), 20000, 'blocked')
  t.same(results, [{ code: 0, signal: null }, { code: 0, signal: null }], 'both writers wrote all 300 lines and exited')
  await forwarder.ended()
  t.ok(dest.destroyed, 'dest failed (EPIPE) and nothing threw')
})
