'use strict'

// The shape of lib/: one folder per runtime, with what they share in
// common/. A worker must not load the supervisor, nor the plugin the worker
// or the supervisor; no import cycle; no file that does several jobs.
const t = require('tap')
const fs = require('node:fs')
const path = require('node:path')

const LIB = path.join(__dirname, '..', '..', 'lib')

// Which folders each runtime may import from.
const ALLOWED = {
  common: ['common'],
  plugin: ['plugin', 'common'],
  worker: ['worker', 'plugin', 'common'],
  supervisor: ['supervisor', 'common'],
  '.': ['supervisor', 'common', '.']
}

function sources () {
  return fs.readdirSync(LIB, { recursive: true }).filter(f => f.endsWith('.ts')).map(f => path.join(LIB, f))
}

/** Relative imports of a file, resolved to files (type-only imports included: they still tie the code). */
function imports (file) {
  const text = fs.readFileSync(file, 'utf8')
  return [...text.matchAll(/(?:from|import\()\s*'(\.{1,2}\/[^']+)'/g)].map(m => path.resolve(path.dirname(file), m[1]) + '.ts')
}

const room = file => path.relative(LIB, file).includes(path.sep) ? path.relative(LIB, file).split(path.sep)[0] : '.'

t.test('no import across runtimes that should not exist', async t => {
  for (const file of sources()) {
    for (const target of imports(file)) {
      if (!target.startsWith(LIB)) continue
      t.ok(ALLOWED[room(file)].includes(room(target)), `${path.relative(LIB, file)} -> ${path.relative(LIB, target)}`)
    }
  }
})

t.test('no import cycle', async t => {
  const graph = new Map(sources().map(f => [f, imports(f).filter(i => i.startsWith(LIB))]))
  const state = new Map()
  const cycles = []
  const visit = (f, trail) => {
    if (state.get(f) === 'done') return
    if (state.get(f) === 'open') { cycles.push([...trail.slice(trail.indexOf(f)), f].map(x => path.relative(LIB, x)).join(' -> ')); return }
    state.set(f, 'open')
    for (const g of graph.get(f) ?? []) visit(g, [...trail, f])
    state.set(f, 'done')
  }
  for (const f of graph.keys()) visit(f, [])
  t.same(cycles, [])
})

t.test('no file in lib/ over 320 lines', async t => {
  for (const file of sources()) {
    const n = fs.readFileSync(file, 'utf8').split('\n').length
    t.ok(n <= 320, `${path.relative(LIB, file)}: ${n} lines`)
  }
})
