'use strict'

// Issue 23: the supervisor's memory must not depend on how many workers it
// has started. A supervisor (test/fixtures/lifecycles.js, under node
// --expose-gc) goes through kill -9s and respawns, reloads and scale changes
// with real workers; after a warm-up, the objects on its heap are counted by
// constructor before and after more lifecycles. Anything kept per lifecycle
// (a worker record, a ChildProcess, a listener, a closure, a timer) grows its
// count by at least one per lifecycle; V8's warm-up (its code, feedback and
// allocation-site boilerplates, left out of the count) does not. The bench with 300
// cycles is bench/memory.mjs (docs/memory.md).
const t = require('tap')
const { execFile } = require('node:child_process')
const path = require('node:path')
const { FIXTURES, childrenOf } = require('../helpers')

// One round is 5 lifecycles: 2 kill -9s, a reload of 2 slots, a scale up and down.
const WARMUP_ROUNDS = 2
const ROUNDS = 6

t.test('no object is kept per worker lifecycle: kill -9, reload, scale', async t => {
  const out = await new Promise((resolve, reject) => {
    const child = execFile(process.execPath, ['--expose-gc', path.join(FIXTURES, 'lifecycles.js'), String(WARMUP_ROUNDS), String(ROUNDS)],
      { encoding: 'utf8', timeout: 150000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout))
    t.teardown(() => {
      // A timeout or failure must leave no worker behind.
      for (const pid of childrenOf(child.pid)) try { process.kill(pid, 'SIGKILL') } catch {}
      child.kill('SIGKILL')
    })
  })
  const { lifecycles, heapBefore, heapAfter, bytesBefore, bytesAfter, growth } = JSON.parse(out.trim().split('\n').pop())
  t.equal(lifecycles, ROUNDS * 5, `${lifecycles} worker lifecycles between the two counts`)
  // Half the lifecycles: a leak of one object per lifecycle is twice that;
  // what grows without one (V8's boilerplate objects as it optimizes) is far less.
  const bound = lifecycles / 2
  const grown = Object.entries(growth).filter(([, n]) => n >= bound).sort((a, b) => b[1] - a[1])
  t.same(grown, [], `no constructor's count grew by ${bound} or more over ${lifecycles} lifecycles (largest: ${JSON.stringify(Object.entries(growth).sort((a, b) => b[1] - a[1]).slice(0, 5))})`)
  // A backstop for what a count may not name (a Buffer or a string kept per
  // lifecycle): the bytes of those objects. The heap after GC as a whole also
  // holds V8's code and feedback, which grow for a while as it optimizes.
  const grewKb = Math.round((bytesAfter - bytesBefore) / 1024)
  t.ok(grewKb < 64, `the objects took ${grewKb} KB more after ${lifecycles} lifecycles (${Math.round(bytesBefore / 1024)} -> ${Math.round(bytesAfter / 1024)} KB; heap after GC ${Math.round(heapBefore / 1024)} -> ${Math.round(heapAfter / 1024)} KB)`)
})
