// Every setting of the supervisor, declared once: its start() option, its
// flag, its environment variables, its default, its help line and its kind,
// which says how a flag's text is parsed and how a value is checked. The
// CLI's parser, --help, start()'s validation and docs/cli.md's flag table
// are all made from this table (gunicorn's config.py does the same).

export type Kind =
  /** An integer >= min (ms, counts, bytes). */
  | { type: 'integer', min: number }
  | { type: 'port' }
  /** n or auto. */
  | { type: 'workers' }
  /** Bytes, or 512M / 1G. */
  | { type: 'size' }
  | { type: 'text' }
  /** A file's path, resolved from the current directory. */
  | { type: 'file' }
  /** A flag without a value: present, or 1/true/yes in the environment. */
  | { type: 'flag' }
  /** on or off. */
  | { type: 'switch' }
  | { type: 'choice', values: readonly string[] }
  /** Repeatable; one value from the environment. */
  | { type: 'list' }

export interface Setting {
  /** start()'s option; null: the CLI's alone. */
  readonly option: string | null
  /** The long flag without its dashes; null: start() only. */
  readonly flag: string | null
  readonly short?: string
  /** The value's placeholder in --help. */
  readonly arg?: string
  readonly kind: Kind
  /** The default; undefined: none (the setting stays unset). */
  readonly value: unknown
  /** Environment variables, first found wins; default FASTIFY_<FLAG>. */
  readonly env?: readonly string[]
  /** The default as the docs show it. */
  readonly shown: string
  readonly help: string
  /** fastify start's own flags come first in --help. */
  readonly group: 'fastify' | 'reuseport'
}

const ms = { type: 'integer', min: 0 } as const

/** SETTINGS with their literal types: what start()'s option types are made from. */

export const BALANCERS = ['reuseport', 'cluster'] as const
export type Balancer = typeof BALANCERS[number]
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

export const SETTINGS = [
  { option: 'port', flag: 'port', short: 'p', arg: '<port>', value: 3000, kind: { type: 'port' }, env: ['FASTIFY_PORT', 'PORT'], shown: '3000', group: 'fastify', help: 'Port to listen on, 0..65535 (0 lets the kernel pick a free one)' },
  { option: 'host', flag: 'address', short: 'a', arg: '<host>', value: 'localhost', kind: { type: 'text' }, shown: 'localhost; 0.0.0.0 inside Docker or Kubernetes', group: 'fastify', help: 'Address to listen on; localhost binds every address it resolves to (127.0.0.1 and ::1)' },
  { option: 'logLevel', flag: 'log-level', short: 'l', arg: '<level>', value: 'info', kind: { type: 'choice', values: LOG_LEVELS }, shown: 'workers fatal, supervisor info', group: 'fastify', help: 'Log level of the workers and of the supervisor' },
  { option: 'options', flag: 'options', short: 'o', value: false, kind: { type: 'flag' }, shown: 'off', group: 'fastify', help: "Use the app's exported options for Fastify" },
  { option: 'closeGraceDelay', flag: 'close-grace-delay', short: 'g', arg: '<ms>', value: 10000, kind: ms, shown: '10000', group: 'fastify', help: 'How long a draining worker may take before it is killed' },
  { option: 'pluginTimeout', flag: 'plugin-timeout', short: 'T', arg: '<ms>', value: 10000, kind: ms, shown: '10000', group: 'fastify', help: 'Plugin load timeout' },
  { option: 'prefix', flag: 'prefix', short: 'x', arg: '<prefix>', value: undefined, kind: { type: 'text' }, shown: 'none', group: 'fastify', help: 'Route prefix for the app' },
  { option: 'prettyLogs', flag: 'pretty-logs', short: 'P', value: false, kind: { type: 'flag' }, shown: 'off', group: 'fastify', help: 'Pretty logs (pino-pretty, an optional dependency)' },
  { option: 'bodyLimit', flag: 'body-limit', arg: '<bytes>', value: undefined, kind: { type: 'integer', min: 1 }, shown: "Fastify's (1 MiB)", group: 'fastify', help: 'Maximum request body size' },
  { option: null, flag: 'require', short: 'r', arg: '<module>', value: undefined, kind: { type: 'list' }, shown: 'none', group: 'fastify', help: 'Preload a CommonJS module in every worker, e.g. tracing; repeatable' },
  { option: null, flag: 'import', short: 'i', arg: '<module>', value: undefined, kind: { type: 'list' }, shown: 'none', group: 'fastify', help: 'Preload an ES module in every worker; repeatable' },
  { option: 'workers', flag: 'workers', short: 'w', arg: '<n|auto>', value: 'auto', kind: { type: 'workers' }, shown: 'auto', group: 'reuseport', help: 'Worker processes; auto is the CPUs this process may use, after cgroup cpu.max and CPU affinity' },
  { option: 'backlog', flag: 'backlog', arg: '<n>', value: 511, kind: { type: 'integer', min: 0 }, shown: '511', group: 'reuseport', help: 'listen(2) backlog per slot' },
  { option: null, flag: 'drain-delay', arg: '<ms>', value: 0, kind: ms, shown: '0', group: 'reuseport', help: 'On SIGTERM or SIGINT, keep serving this long before draining, so that load balancers notice' },
  { option: 'readyTimeout', flag: 'ready-timeout', arg: '<ms>', value: 30000, kind: { type: 'integer', min: 1 }, shown: '30000', group: 'reuseport', help: 'How long a new worker may take to be ready' },
  { option: 'handshakeGrace', flag: 'handshake-grace', arg: '<ms>', value: 2000, kind: ms, shown: '2000', group: 'reuseport', help: 'When a slot is retired (SIGTTOU), how long its handshakes in flight get once its accept queue is empty' },
  { option: 'stallTimeout', flag: 'stall-timeout', arg: '<ms>', value: 500, kind: ms, shown: '500', group: 'reuseport', help: 'Steer new connections away from a worker whose event loop is this late; 0 disables' },
  { option: 'stallQueue', flag: null, value: 32, kind: { type: 'integer', min: 1 }, shown: '32', group: 'reuseport', help: 'A slot whose accept queue holds this many connections while its worker accepts none is steered out' },
  { option: 'workerTimeout', flag: 'worker-timeout', arg: '<ms>', value: 30000, kind: ms, shown: '30000', group: 'reuseport', help: 'Kill and replace a worker that has sent no health report for this long; its queued connections wait for the next worker; 0 disables' },
  { option: 'maxMemory', flag: 'max-memory', arg: '<size>', value: 0, kind: { type: 'size' }, shown: 'no limit', group: 'reuseport', help: 'Replace a worker gracefully once its RSS passes this (512M, 1G)' },
  { option: 'maxRequests', flag: 'max-requests', arg: '<n>', value: 0, kind: ms, shown: '0 (never)', group: 'reuseport', help: 'Replace a worker gracefully after n requests' },
  { option: 'maxRequestsJitter', flag: 'max-requests-jitter', arg: '<n>', value: 0, kind: ms, shown: '0', group: 'reuseport', help: "Add a random 0..n to each worker's --max-requests" },
  { option: 'crashLoopTimeout', flag: 'crash-loop-timeout', arg: '<ms>', value: 30000, kind: ms, shown: '30000', group: 'reuseport', help: 'Exit 1 when no worker has served for this long, so that Docker or Kubernetes restarts the container; 0 disables' },
  { option: 'crashGrace', flag: 'crash-grace', arg: '<ms>', value: 1000, kind: ms, shown: '1000', group: 'reuseport', help: 'A worker with an uncaught exception stops accepting, is replaced at once, and answers what it has in flight for up to this long before it exits; 0: exit at once' },
  { option: 'join', flag: 'join', value: false, kind: { type: 'flag' }, shown: 'off: a busy port is refused with EADDRINUSE', group: 'reuseport', help: 'Share the port with another process already listening on it (a blue/green hand-over)' },
  { option: 'balancer', flag: 'balancer', arg: '<mode>', value: undefined, kind: { type: 'choice', values: BALANCERS }, shown: 'reuseport where it works, else cluster', group: 'reuseport', help: "reuseport: a socket per worker, balanced by the kernel (Linux with the addon); cluster: Node's cluster round-robin" },
  { option: 'balance', flag: 'balance', arg: '<on|off>', value: true, kind: { type: 'switch' }, shown: 'on', group: 'reuseport', help: 'Even out connections across workers: steer new ones to the workers holding fewer, and have a worker holding more than its share of a few long-lived connections end some kept-alive ones at their next response' },
  { option: 'metricsPort', flag: 'metrics-port', arg: '<port>', value: undefined, kind: { type: 'port' }, shown: 'off', group: 'reuseport', help: 'Serve Prometheus metrics per slot at http://<address>:<port>/metrics' },
  { option: 'tlsTicketRotation', flag: 'tls-ticket-rotation', arg: '<ms>', value: 3600000, kind: ms, shown: '3600000 (1 h)', group: 'reuseport', help: 'Rotate the TLS session ticket keys shared by the workers this often; a session from just before a rotation still resumes; 0: never' },
  { option: 'tlsTicketKeys', flag: 'tls-ticket-keys', arg: '<file>', value: undefined, kind: { type: 'file' }, shown: 'none: the supervisor makes them', group: 'reuseport', help: 'Take the TLS session ticket keys from this file (48 bytes: one key; 144: previous, current, next), read again on SIGHUP, to share sessions with other processes' },
  { option: 'ipv6Only', flag: null, value: false, kind: { type: 'switch' }, shown: 'false', group: 'reuseport', help: 'For ::, accept IPv6 only instead of dual-stack' }
] as const satisfies readonly Setting[]

/** The same rows, as the code that walks them sees them. */
export const TABLE: readonly Setting[] = SETTINGS

type OptionSetting = Extract<typeof SETTINGS[number], { option: string }>

/** What start() accepts for a setting of this kind. */
type Input<K> = K extends { type: 'integer' } ? number
  : K extends { type: 'port' | 'size' } ? number | string
    : K extends { type: 'workers' } ? number | 'auto'
      : K extends { type: 'text' | 'file' } ? string
        : K extends { type: 'flag' | 'switch' } ? boolean
          : K extends { type: 'choice', values: ReadonlyArray<infer V> } ? V : never

/** What it is once resolved: ports and sizes are numbers. */
type Output<K> = K extends { type: 'port' | 'size' } ? number : Input<K>

/** start()'s options, each from its row of SETTINGS. */
export type SettingOptions = { [S in OptionSetting as S['option']]?: Input<S['kind']> }

/** The same, resolved: every setting with its default, those without one possibly undefined. */
export type ResolvedSettings = { [S in OptionSetting as S['option']]: S['value'] extends undefined ? Output<S['kind']> | undefined : Output<S['kind']> }

/** The environment variables a setting reads. */
export function envNames (s: Setting): readonly string[] {
  return s.env ?? (s.flag === null ? [] : ['FASTIFY_' + s.flag.toUpperCase().replace(/-/g, '_')])
}

/** `-p, --port <port>` */
export function flagUsage (s: Setting): string {
  return `${s.short !== undefined ? `-${s.short}, ` : ''}--${s.flag ?? ''}${s.arg !== undefined ? ` ${s.arg}` : ''}`
}

/** docs/cli.md's flag table, between its markers. */
export function flagTable (): string {
  const rows = TABLE.filter(s => s.flag !== null).map(s => {
    const env = envNames(s).map(e => `\`${e}\``).join(', then ')
    return `| \`${flagUsage(s).replace(/\|/g, '\\|')}\` | ${env} | ${s.shown} | ${s.help.replace(/\|/g, '\\|')} |`
  })
  return ['| flag | env | default | description |', '| --- | --- | --- | --- |', ...rows, '| `-v, --version` | | | Print the version |', '| `-h, --help` | | | Show the help |'].join('\n')
}
