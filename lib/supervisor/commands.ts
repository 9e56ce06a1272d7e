// The CLI's answers besides `start`: --version, `build` (the addon from
// source, where no prebuilt binary fits), and what to say to fastify-cli's
// -w/--watch habit. Used by lib/cli.ts and lib/supervisor/flags.ts.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

// dist/lib/supervisor/ -> the package root.
const ROOT = path.join(__dirname, '..', '..', '..')

/** This package's version, from its package.json. */
export function version (): string {
  return (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
}

/** The command word of a `fastify-reuseport <command>` line that is not `start`. */
export function otherCommand (command: string | undefined): 'help' | 'version' | 'build' | null {
  if (command === '--help' || command === '-h' || command === 'help') return 'help'
  if (command === '--version' || command === '-v' || command === 'version') return 'version'
  if (command === 'build') return 'build'
  return null
}

// fastify-cli's `-w` is --watch; here it is --workers. Said wherever a -w
// value or a --watch flag cannot be what the user meant.
export const WATCH_HINT = "-w is --workers <n|auto> here; fastify-cli's -w/--watch is not supported (send SIGHUP to reload the app)"

/** parseArgs's first sentence, with the hint when the trouble is -w or --watch. */
export function explainParseError (message: string): string {
  return /'-w\b|'--watch'|'--workers\b/.test(message) ? `${message}: ${WATCH_HINT}` : message
}

/** Builds the addon from source (native/build.js); resolves to its exit code. */
export function buildAddon (): number {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'native', 'build.js'), '--from-source', '--strict'], { stdio: 'inherit' })
  return r.status ?? 1
}
