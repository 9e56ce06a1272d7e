'use strict'

// The docs kept in step with the code: the generated flag table, the error
// catalogue, and no link to a file the repository does not have.
const t = require('tap')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const ROOT = path.join(__dirname, '..', '..')
const read = f => fs.readFileSync(path.join(ROOT, f), 'utf8')

t.test('docs/cli.md holds the flag table made from the settings table', async t => {
  const { flagTable } = require('../../dist/lib/supervisor/settings')
  const doc = read('docs/cli.md')
  const section = doc.slice(doc.indexOf('<!-- flags:start -->') + '<!-- flags:start -->'.length, doc.indexOf('<!-- flags:end -->')).trim()
  t.equal(section, flagTable(), 'run `npm run docs` after changing a setting')
})

t.test('docs/errors.md lists exactly the exported error codes', async t => {
  const { errorCodes } = require('../../dist/index')
  const doc = read('docs/errors.md')
  const section = doc.slice(doc.indexOf('<!-- errors:start -->'), doc.indexOf('<!-- errors:end -->'))
  const documented = [...section.matchAll(/^\| `(FST_REUSEPORT_[A-Z_]+)`/gm)].map(m => m[1])
  t.same(documented.sort(), Object.keys(errorCodes).sort())
  for (const [code, E] of Object.entries(errorCodes)) t.equal(new E('x', 'y', 'z').code, code, `${code} is its own code`)
})

t.test('every relative link in the docs names a file that exists', async t => {
  const files = ['README.md', 'CONTRIBUTING.md', 'bench/README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter(f => f.endsWith('.md')).map(f => `docs/${f}`)]
  for (const f of files) {
    for (const [, target] of read(f).matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
      if (/^[a-z]+:/.test(target)) continue
      t.ok(fs.existsSync(path.join(ROOT, path.dirname(f), target)), `${f} -> ${target}`)
    }
  }
})

t.test('nothing cites a design file outside the repository', async t => {
  // git grep exits 1 when it finds nothing.
  const r = spawnSync('git', ['grep', '-l', '-E', 'DESIGN[.]md|[.][.]/shared/', '--', '*.ts', '*.js', '*.mjs', '*.md', '*.json', ':!test/unit/docs.test.js'], { cwd: ROOT, encoding: 'utf8' })
  t.equal(r.stdout, '', 'no file names them')
}, { skip: !fs.existsSync(path.join(ROOT, '.git')) && 'not a git checkout' })

t.test('README stays a newcomer\'s page', async t => {
  const lines = read('README.md').split('\n').length
  t.ok(lines <= 260, `README.md has ${lines} lines`)
  t.match(read('README.md'), /npm install[\s\S]*npm run demo[\s\S]*npm test/, 'it starts with install, demo and test')
})
