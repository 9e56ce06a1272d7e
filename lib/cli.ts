#!/usr/bin/env node
// The command line: `fastify-reuseport start [options] <app-file>`. Parses the
// flags (lib/supervisor/flags.ts), starts the supervisor, and turns signals
// into its operations.
// First: after an in-place upgrade it catches signals until ours are installed.
import { replay } from './supervisor/early-signals'
import closeWithGrace from 'close-with-grace'
import { buildAddon, version } from './supervisor/commands'
import { helpText, parseCli } from './supervisor/flags'
import { followParent } from './supervisor/parent'
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
  let config: ReturnType<typeof parseCli>
  try {
    config = parseCli(process.argv.slice(2))
  } catch (err) {
    fail(err as Error)
  }
  if (config === 'help' || config === 'version') {
    process.stdout.write(config === 'help' ? helpText() : `${version()}\n`)
    return
  }
  if (config === 'build') process.exit(buildAddon())
  const { drainDelay } = config
  const logger = makeLogger(config.supervisorLogLevel, config.start.prettyLogs === true)
  // Started by npm or npx: their exit is a SIGTERM to us (lib/supervisor/parent.ts).
  const launcher = followParent()
  // A signal while the workers boot: Node's default action would end us at
  // once and leave them running (issue 24). SIGTERM and SIGINT shut down what
  // has started, a second one exits at once (the 'exit' listener kills the
  // workers); SIGHUP and the scale signals wait for the start.
  const abort = new AbortController()
  const early = (): void => { if (abort.signal.aborted) process.exit(1); abort.abort() }
  const wait = (): void => {}
  const earlySignals = { SIGTERM: early, SIGINT: early, SIGHUP: wait, SIGTTIN: wait, SIGTTOU: wait }
  for (const [signal, listener] of Object.entries(earlySignals)) process.on(signal, listener)
  const handle = await start({ ...config.start, logger, signal: abort.signal }).catch(async (err: Error) => {
    if (!abort.signal.aborted) fail(err)
    // Shut down before it was ready: the workers have exited, as asked.
    await flushed()
    process.exit(0)
  })
  for (const [signal, listener] of Object.entries(earlySignals)) process.off(signal, listener)
  if (launcher !== null) logger.info({ launcher }, `started by ${launcher}: shutting down when it exits`)
  if (abort.signal.aborted) {
    await handle.close()
    await flushed()
    process.exit(0)
  }
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
