// Writes the generated parts of the docs: docs/cli.md's flag table, from the
// settings table (lib/supervisor/settings.ts). `npm run docs` after a change
// to a setting; test/unit/docs.test.js fails while they differ.
//
//   node scripts/docs.mjs [--check]
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const { flagTable } = require(path.join(ROOT, 'dist', 'lib', 'supervisor', 'settings.js'))

export function withSection (text, name, body) {
  const start = `<!-- ${name}:start -->`
  const end = `<!-- ${name}:end -->`
  const i = text.indexOf(start)
  const j = text.indexOf(end)
  if (i < 0 || j < i) throw new Error(`no ${start} ... ${end} section`)
  return text.slice(0, i + start.length) + '\n' + body + '\n' + text.slice(j)
}

const file = path.join(ROOT, 'docs', 'cli.md')
const before = fs.readFileSync(file, 'utf8')
const after = withSection(before, 'flags', flagTable())
if (process.argv.includes('--check')) {
  if (before !== after) {
    process.stderr.write('docs/cli.md: the flag table differs from lib/supervisor/settings.ts: run npm run docs\n')
    process.exit(1)
  }
} else if (before !== after) {
  fs.writeFileSync(file, after)
  process.stdout.write('docs/cli.md: flag table written\n')
}
