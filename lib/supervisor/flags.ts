// The CLI's flags and environment variables, parsed from the settings table
// (lib/supervisor/settings.ts): flags win over FASTIFY_* variables, as in
// fastify-cli. Errors are one line naming the flag and the text received.
import fs from 'node:fs'
import { parseArgs } from 'node:util'
import { FST_REUSEPORT_INVALID_ARGUMENT } from '../common/errors'
import type { StartOptions } from './options'
import { parseSize } from './policy'
import { WATCH_HINT, explainParseError, otherCommand } from './commands'
import { envNames, flagUsage, TABLE, type Setting } from './settings'

export interface CliConfig {
  start: StartOptions
  /** The supervisor's own log level (-l sets both; the workers default to fatal, as fastify start). */
  supervisorLogLevel: string
  drainDelay: number
}

function bad (message: string): never {
  throw new FST_REUSEPORT_INVALID_ARGUMENT(message)
}

const FLAGS = TABLE.filter((s): s is Setting & { flag: string } => s.flag !== null)

const OPTIONS = Object.fromEntries([
  ...FLAGS.map(s => [s.flag, {
    type: s.kind.type === 'flag' ? 'boolean' : 'string',
    ...(s.short !== undefined ? { short: s.short } : {}),
    ...(s.kind.type === 'list' ? { multiple: true } : {})
  }]),
  ['help', { type: 'boolean', short: 'h' }]
]) as Record<string, { type: 'string' | 'boolean', short?: string, multiple?: boolean }>

/** The typed value of a flag's text. */
function parseText (s: Setting & { flag: string }, text: string): unknown {
  const name = s.flag
  const integer = (min: number): number => {
    if (!/^\d+$/.test(text.trim()) || Number(text) < min) bad(`--${name} must be an integer >= ${min}, received '${text}'`)
    return Number(text)
  }
  switch (s.kind.type) {
    case 'integer': return integer(s.kind.min)
    case 'port': {
      const port = integer(0)
      return port > 65535 ? bad(`--${name} must be an integer from 0 to 65535, received '${text}'`) : port
    }
    case 'workers':
      // fastify-cli's -w is --watch: a value that is no count gets the hint.
      if (text !== 'auto' && !/^\s*\d+\s*$/.test(text)) bad(`--workers must be an integer >= 1 or auto, received '${text}': ${WATCH_HINT}`)
      return text === 'auto' ? 'auto' : integer(1)
    case 'size': return parseSize(text) ?? bad(`--${name} must be a size such as 512M or 1G, received '${text}'`)
    case 'switch':
      if (/^(on|true|1|yes)$/i.test(text)) return true
      if (/^(off|false|0|no)$/i.test(text)) return false
      return bad(`--${name} must be on or off, received '${text}'`)
    case 'choice': return s.kind.values.includes(text) ? text : bad(`--${name} must be one of ${s.kind.values.join(', ')}, received '${text}'`)
    case 'flag': return /^(1|true|yes)$/i.test(text)
    case 'text':
    case 'file':
    case 'list': return text
  }
}

/** Runs in a container, where fastify-cli listens on 0.0.0.0 (is-docker, isKubernetes). */
function inContainer (env: NodeJS.ProcessEnv): boolean {
  if (env.KUBERNETES_SERVICE_HOST !== undefined) return true
  if (fs.existsSync('/.dockerenv') || fs.existsSync('/run/.containerenv')) return true
  try {
    return /docker|kubepods|containerd/.test(fs.readFileSync('/proc/self/cgroup', 'utf8'))
  } catch {
    return false
  }
}

/** Parses `start [options] <app>`. */
export function parseCli (argv: string[], env: NodeJS.ProcessEnv = process.env): CliConfig | 'help' | 'version' | 'build' {
  const [command, ...rest] = argv
  const other = otherCommand(command)
  if (other !== null) return other
  if (command !== 'start') bad(command === undefined ? 'missing command: use "fastify-reuseport start <app-file>"' : `unknown command '${command}': use "fastify-reuseport start <app-file>"`)
  let parsed
  try {
    parsed = parseArgs({ args: rest, options: OPTIONS, allowPositionals: true, strict: true })
  } catch (err) {
    // Node's own text goes on to explain '--' for positionals: the first sentence says it all.
    bad(explainParseError((err as Error).message.split(/\.\s/)[0] as string))
  }
  const { values, positionals } = parsed
  if (values.help === true) return 'help'
  const w = values.workers
  if (positionals.length === 0 && typeof w === 'string' && !/^(\d+|auto)$/.test(w)) bad(`-w took '${w}' as the worker count and no app file is left: ${WATCH_HINT}`)
  if (positionals.length !== 1) bad(positionals.length === 0 ? 'missing the app file: fastify-reuseport start [options] <app-file>' : `expected one app file, received ${positionals.join(' ')}`)

  const given: Record<string, unknown> = {}
  for (const s of FLAGS) {
    const v = values[s.flag]
    const fromEnv = envNames(s).map(e => env[e]).find(e => e !== undefined && e !== '')
    if (s.kind.type === 'list') given[s.flag] = Array.isArray(v) ? v : fromEnv !== undefined ? [fromEnv] : []
    else if (typeof v === 'boolean') given[s.flag] = v
    else if (typeof v === 'string') given[s.flag] = parseText(s, v)
    else if (fromEnv !== undefined) given[s.flag] = parseText(s, fromEnv)
  }
  const start: Record<string, unknown> = { app: positionals[0] }
  for (const s of FLAGS) if (s.option !== null && given[s.flag] !== undefined) start[s.option] = given[s.flag]
  start.host ??= inContainer(env) ? '0.0.0.0' : 'localhost'
  // The app's logger defaults to fatal, as in fastify start; the supervisor's
  // own lines (slots, reloads, exits) show at info unless -l says otherwise.
  const level = given['log-level'] as string | undefined
  start.logLevel = level ?? 'fatal'
  start.preload = [...(given.require as string[]).map(m => ['--require', m]), ...(given.import as string[]).map(m => ['--import', m])].flat()
  return { start: start as unknown as StartOptions, supervisorLogLevel: level ?? 'info', drainDelay: (given['drain-delay'] as number | undefined) ?? 0 }
}

function wrap (text: string, width: number): string[] {
  const lines = ['']
  for (const word of text.split(' ')) {
    const last = lines.length - 1
    if ((lines[last] as string).length > 0 && (lines[last] as string).length + word.length + 1 > width) lines.push(word)
    else lines[last] = lines[last] === '' ? word : `${lines[last] as string} ${word}`
  }
  return lines
}

/** --help, made from the table. */
export function helpText (): string {
  const line = (s: Setting & { flag: string }): string => {
    const usage = `  ${s.short !== undefined ? '' : '    '}${flagUsage(s)}`
    const env = envNames(s).join(' or ')
    const text = wrap(`${s.help} (default ${s.shown})${env ? ` [env: ${env}]` : ''}`, 46)
    return text.map((l, i) => `${(i === 0 ? usage : '').padEnd(32)} ${l}`).join('\n')
  }
  return `Usage: fastify-reuseport start [options] <app-file>
       fastify-reuseport build       build the addon from source (where no
                                     prebuilt binary fits; needs python3, make, g++)
       fastify-reuseport --version

Runs a Fastify app (a plugin file, as for "fastify start") on N worker
processes, each serving its own SO_REUSEPORT socket. The supervisor owns the
sockets, so restarts and crashes reset no connection.

Options (fastify start compatible):
${FLAGS.filter(s => s.group === 'fastify').map(line).join('\n')}

Options (fastify-reuseport):
${FLAGS.filter(s => s.group === 'reuseport').map(line).join('\n')}
  -v, --version                  Print the version
  -h, --help                     Show this help

Signals:
  SIGHUP            rolling restart: each slot gets a new worker (the app is
                    re-read from disk) before the old one drains; the
                    --tls-ticket-keys file is read again first
  SIGUSR2           upgrade the supervisor in place (same pid, no socket
                    closed; after npm update), then roll the workers
  SIGTERM, SIGINT   graceful shutdown: drain delay, drain every worker, exit 0;
                    a second signal exits at once with code 1
  SIGTTIN           add a worker slot
  SIGTTOU           retire the last worker slot: steer it out, serve what is
                    queued on it, then close it (never the last slot)
`
}
