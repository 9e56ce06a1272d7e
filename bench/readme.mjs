// Copies the latest results into bench/README.md between <!-- NAME:start --> and <!-- NAME:end -->.
import fs from 'node:fs'
import path from 'node:path'
import { ROOT } from './lib.mjs'

const readme = path.join(ROOT, 'bench', 'README.md')
let text = fs.readFileSync(readme, 'utf8')
for (const [name, file] of [['bench', 'results.md'], ['chaos', 'chaos.md'], ['soak', 'soak.md'], ['stall', 'stall.md']]) {
  const source = path.join(ROOT, 'bench', 'results', file)
  if (!fs.existsSync(source)) continue
  const re = new RegExp(`(<!-- ${name}:start -->\\n)[\\s\\S]*?(<!-- ${name}:end -->)`)
  text = text.replace(re, (_, start, end) => `${start}${fs.readFileSync(source, 'utf8').trim()}\n${end}`)
}
fs.writeFileSync(readme, text)
