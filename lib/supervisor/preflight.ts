// `fastify-reuseport --preflight <state-version> <protocols>`: run by the
// old supervisor on the new code before it replaces itself with it
// (lib/supervisor/upgrade.ts). Loads every module (a syntax error or a
// missing file shows here, not after the execve), checks the addon, the
// state version and the protocols of the workers to adopt. Exit 0 and one
// JSON line, or exit 1 and one line saying why.
import fs from 'node:fs'
import path from 'node:path'
import vm from 'node:vm'
import { protocolAccepted, protocolMismatch } from '../common/messages'
import { loadNative } from '../common/native'
import { packageVersion, STATE_VERSIONS } from './upgrade-state'

const LIB = path.join(__dirname, '..')
// Both run their program when loaded: compiled only.
const PROGRAMS = new Set([path.join(LIB, 'cli.js'), path.join(LIB, 'worker', 'main.js')])

function modules (dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true }).map(String).filter(f => f.endsWith('.js')).map(f => path.join(dir, f))
}

/** Why the new code cannot take over, or null. */
export function preflightProblem (stateVersion: number, protocols: number[]): string | null {
  for (const file of modules(LIB)) {
    try {
      if (PROGRAMS.has(file)) new vm.Script(fs.readFileSync(file, 'utf8'), { filename: file }) // eslint-disable-line no-new
      else require(file)
    } catch (err) {
      return `${path.relative(path.join(LIB, '..', '..'), file)} does not load: ${(err as Error).name}: ${(err as Error).message.split('\n')[0] ?? ''}`
    }
  }
  const { binding, reason } = loadNative()
  if (binding === null) return `the native addon of the new code does not load: ${reason}`
  for (const fn of ['execve', 'clearCloexec', 'memfdState', 'waitpid'] as const) {
    if (typeof binding[fn] !== 'function') return `the native addon of the new code has no ${fn}: rebuild it (npm rebuild fastify-reuseport)`
  }
  if (!STATE_VERSIONS.includes(stateVersion)) return `the new code reads state versions ${STATE_VERSIONS.join(', ')}, not ${stateVersion}`
  for (const p of protocols) if (!protocolAccepted(p)) return protocolMismatch('a running worker', p)
  return null
}

export function runPreflight (args: string[]): never {
  const stateVersion = Number(args[0])
  const protocols = (args[1] ?? '').split(',').filter(Boolean).map(Number)
  let problem: string | null
  try {
    problem = preflightProblem(stateVersion, protocols)
  } catch (err) {
    problem = `the new code does not load: ${String(err)}`
  }
  if (problem !== null) {
    process.stderr.write(`fastify-reuseport: FST_REUSEPORT_UPGRADE_FAILED: ${problem}\n`)
    process.exit(1)
  }
  process.stdout.write(JSON.stringify({ ok: true, version: packageVersion(), node: process.version }) + '\n')
  process.exit(0)
}
