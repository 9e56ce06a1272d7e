// Fails when the unit tier's coverage falls below the floor it has reached:
// tap writes the summary (--coverage-report=json-summary), this reads it.
// Raise FLOOR as coverage grows; never lower it to make a change pass.
//
//   node scripts/coverage-floor.mjs
import fs from 'node:fs'

const FLOOR = { lines: 90, branches: 80, functions: 85 }

const summary = JSON.parse(fs.readFileSync('.tap/report/coverage-summary.json', 'utf8')).total
const low = Object.entries(FLOOR).filter(([k, min]) => summary[k].pct < min)
const text = Object.keys(FLOOR).map(k => `${k} ${summary[k].pct}% (floor ${FLOOR[k]}%)`).join(', ')
if (low.length > 0) {
  process.stderr.write(`coverage below the floor: ${text}\n`)
  process.exit(1)
}
process.stdout.write(`coverage: ${text}\n`)
