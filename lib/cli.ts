#!/usr/bin/env node
// The command line: `fastify-reuseport start [options] <app-file>`. Parses the
// flags (lib/supervisor/flags.ts), starts the supervisor, and turns signals
// into its operations.
// First: after an in-place upgrade it catches signals until ours are installed.
import { replay } from './supervisor/early-signals'
import closeWithGrace from 'close-with-grace'
import { helpText, parseCli, type CliConfig } from './supervisor/flags'
import { runPreflight } from './supervisor/preflight'
import { makeLogger, start } from './supervisor/start'

/** Resolves once stdout has written everything queued (it is non-blocking on a pipe). */
function flushed (): Promise<void> {
  return new Promise(resolve => {
    if (process.stdout.writableLength === 0) resolve()
    else process.stdout.once('drain', () => resolve())
  })
}

function fail (err: Error & { code?: string }): never {
  const code = err.code ?? err.name
  const line = err.message.includes(code) ? err.message : `${code}: ${err.message}`
  // A worker's boot error follows its one line as Node would print it: a
  // SyntaxError's file:line and caret, a thrown error's stack. Our own codes
  // say all there is in the line.
  const c = err.cause as (Error & { code?: unknown }) | undefined
  const cause = c instanceof Error && typeof c.stack === 'string' && !String(c.code).startsWith('FST_REUSEPORT_') ? c.stack.replace(/\n*$/, '\n') : ''
  process.stderr.write(`fastify-reuseport: ${line}\n${cause}`)
  process.exit(err.code === 'FST_REUSEPORT_INVALID_ARGUMENT' ? 2 : 1)
}

async function main (): Promise<void> {
  // The old supervisor checks this code before it runs it in place (lib/supervisor/upgrade.ts).
  if (process.argv[2] === '--preflight') runPreflight(process.argv.slice(3))
  let config: CliConfig | 'help'
  try {
    config = parseCli(process.argv.slice(2))
  } catch (err) {
    fail(err as Error)
  }
  if (config === 'help') {
    process.stdout.write(helpText())
    return
  }
  const { drainDelay } = config
  const logger = makeLogger(config.supervisorLogLevel, config.start.prettyLogs === true)
  const handle = await start({ ...config.start, logger }).catch(fail)
  // Failures are logged by the supervisor, and the workers serving keep serving.
  // A crash loop: exit non-zero, so that the container's restart policy takes over.
  handle.once('fatal', err => {
    process.stderr.write(`fastify-reuseport: ${(err as Error & { code: string }).code}: ${err.message}\n`)
    // Lines still queued for a pipe are lost at process.exit.
    handle.once('close', () => { flushed().then(() => process.exit(1), () => process.exit(1)) })
  })
  const ignore = (): void => {}
  process.on('SIGHUP', () => { handle.reload().catch(ignore) })
  // In place, same pid (docs/upgrade.md); a failure is logged and changes nothing.
  process.on('SIGUSR2', () => { handle.upgrade().catch(ignore) })
  // Signals may come faster than slots start: count them against a target.
  let target = handle.slots().length
  process.on('SIGTTIN', () => { handle.scale(++target).catch(ignore) })
  process.on('SIGTTOU', () => {
    if (target > 1) handle.scale(--target).catch(ignore)
    else process.stderr.write('fastify-reuseport: SIGTTOU ignored: the last slot is never retired\n')
  })
  closeWithGrace({
    delay: drainDelay + (config.start.closeGraceDelay ?? 10000) + 5000,
    // SIGUSR2 is close-with-grace's too by default: here it upgrades (docs/upgrade.md).
    skip: ['SIGHUP', 'SIGUSR2', 'beforeExit'],
    logger: { error: (m: unknown) => process.stderr.write(`fastify-reuseport: ${String(m)}\n`) }
  }, async ({ err }) => {
    if (err) process.stderr.write(`fastify-reuseport: ${err.stack ?? err.message}\n`)
    await handle.close({ drainDelay })
    // close-with-grace exits next: lines still queued for a slow reader would be lost.
    await flushed()
  })
  replay()
}

if (require.main === module) void main()
