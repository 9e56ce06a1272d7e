// How long Node's own boot leaves a supervisor without its signal handlers
// after an in-place upgrade's execve (docs/upgrade.md, "Signals"): from the
// addon's execve to the first line of the new program, then to the moment
// the CLI's modules are loaded. Prints one JSON line per run.
//
//   node bench/exec-window.mjs [runs]
import { createRequire } from 'node:module'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { ROOT } from './lib.mjs'

const require = createRequire(import.meta.url)
const now = () => performance.timeOrigin + performance.now()
if (process.env.T0) {
  const first = now() - Number(process.env.T0)
  require(path.join(ROOT, 'dist', 'lib', 'supervisor', 'start.js'))
  process.stdout.write(JSON.stringify({ firstLineMs: +first.toFixed(1), modulesLoadedMs: +(now() - Number(process.env.T0)).toFixed(1) }) + '\n')
} else if (process.env.EXEC) {
  const { binding } = require(path.join(ROOT, 'dist', 'lib', 'common', 'native.js')).loadNative()
  binding.clearCloexec(1)
  binding.execve(process.execPath, [process.execPath, process.argv[1]], ['T0=' + now()])
} else {
  for (let i = 0; i < Number(process.argv[2] ?? 8); i++) {
    process.stdout.write(spawnSync(process.execPath, [process.argv[1]], { env: { EXEC: '1' }, encoding: 'utf8' }).stdout)
  }
}
