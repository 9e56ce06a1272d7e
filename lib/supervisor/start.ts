// start(): validates the options, picks the balancer, opens the slots and
// starts their workers; resolves to the running supervisor's handle.
import fs from 'node:fs'
import pino, { type Logger } from 'pino'
import { FST_REUSEPORT_APP_NOT_FOUND, FST_REUSEPORT_UNSUPPORTED } from '../common/errors'
import { closeListeners, resolveHost } from '../common/listener'
import { PROTOCOL } from '../common/messages'
import { loadNative } from '../common/native'
import { idleReportMs } from '../common/cadence'
import { systemClock } from './clock'
import type { Settings } from './context'
import { availableCpus } from './cpus'
import type { SupervisorHandle } from './handle'
import { resolveStartOptions, type StartOptions, type StartSettings } from './options'
import { clusterSockets, reuseportSockets, type SlotSockets } from './sockets'
import { adoptingSpawner } from './adopt'
import { spawnWorker } from './spawn'
import { probePort } from './port-probe'
import { takeCarriedState } from './upgrade-state'
import { Supervisor } from './supervisor'
import { adoptable, inheritedSlots, Notifier } from './systemd'

export type { StartOptions } from './options'

// A stuck worker gets its share of new connections until it is steered out:
// detection time is what this feature sells. A busy worker reports 20 times
// a second; an idle one sends a heartbeat (lib/common/cadence.ts).
const HEALTH_MS = 50

/** The supervisor's logger: pino, JSON lines, or pino-pretty with -P. */
export function makeLogger (level: string, pretty: boolean): Logger {
  const options = { level, base: { pid: process.pid, role: 'supervisor' } }
  // Through process.stdout, the stream the workers' lines are forwarded to
  // (lib/supervisor/logs.ts): pino's own fd writes could land inside a
  // forwarded line still queued there, since stdout on a pipe is non-blocking.
  return pretty ? pino({ ...options, transport: { target: 'pino-pretty' } }) : pino(options, process.stdout)
}

/** What every worker is told, derived once from the settings. */
export function workerSettings (s: StartSettings, fallbackReason: string | null): Settings {
  const healthMs = s.stallTimeout > 0 ? Math.min(HEALTH_MS, Math.max(10, Math.floor(s.stallTimeout / 4))) : 250
  return {
    ...s,
    config: {
      protocol: PROTOCOL,
      app: s.app,
      logLevel: s.logLevel,
      prettyLogs: s.prettyLogs,
      useOptions: s.options,
      prefix: s.prefix,
      pluginTimeout: s.pluginTimeout,
      bodyLimit: s.bodyLimit,
      idleMs: Math.min(1000, Math.max(50, Math.floor(s.closeGraceDelay / 4))),
      graceMs: s.closeGraceDelay,
      crashGraceMs: s.crashGrace,
      healthMs,
      // An idle worker reports this seldom (lib/common/cadence.ts).
      heartbeatMs: idleReportMs(healthMs, s.workerTimeout),
      countRequests: s.maxRequests > 0,
      listen: s.balancer === 'cluster' ? { port: s.port, host: s.host, backlog: s.backlog } : null
    },
    fallbackReason
  }
}

/** Runs an app on N workers, each serving its own SO_REUSEPORT socket owned here. */
export async function start (options: StartOptions & { logger?: Logger }): Promise<SupervisorHandle> {
  const s = resolveStartOptions(options)
  const workers = s.workers === 'auto' ? availableCpus() : s.workers
  const log = options.logger ?? makeLogger(s.logLevel, s.prettyLogs)
  if (!fs.existsSync(s.app)) throw new FST_REUSEPORT_APP_NOT_FOUND(s.app)

  // Where SO_REUSEPORT cannot balance (macOS, Windows, no addon), Node's
  // cluster round-robin serves instead: same flags, signals, drain, respawn.
  const { binding, reason } = loadNative()
  if (s.balancer === 'reuseport' && binding === null) throw new FST_REUSEPORT_UNSUPPORTED(reason)
  // The new half of an in-place upgrade (lib/supervisor/upgrade.ts): sockets and workers carried over.
  const carried = binding === null ? null : takeCarriedState(binding)
  const balancer = carried !== null ? 'reuseport' : s.balancer ?? (binding === null ? 'cluster' : 'reuseport')
  const settings = workerSettings({ ...s, balancer }, s.balancer === undefined ? reason : null)
  const notifier = new Notifier(binding, process.env.NOTIFY_SOCKET, log)
  let slots = carried?.slots.length ?? workers
  let sockets: SlotSockets
  if (binding === null || balancer === 'cluster') {
    sockets = clusterSockets(s.port)
  } else {
    // Sockets carried across an in-place upgrade, or kept for us by systemd (its fd store, socket
    // activation), are served as they are: what is queued on them waits for us.
    const inherited = carried !== null
      ? new Map(carried.slots.map((c, i) => [i, c.listeners]))
      : inheritedSlots(binding, process.env, process.pid, s.backlog, log)
    const adopted = adoptable(inherited)
    // One service per port, unless asked (lib/supervisor/port-probe.ts); sockets handed to us are ours.
    // One DNS lookup serves the probe and the slots.
    const resolved = adopted === 0 ? await resolveHost(s.host) : []
    if (!s.join && adopted === 0) await probePort(resolved, s.port, s.ipv6Only)
    for (const [index, listeners] of inherited) if (index >= adopted) closeListeners(binding, listeners)
    slots = Math.max(slots, adopted)
    const first = inherited.get(0)
    const addresses = first?.map(({ address, family }) => ({ address, family })) ?? resolved
    sockets = reuseportSockets(binding, { addresses, port: carried?.port ?? first?.[0]?.port ?? s.port, backlog: s.backlog, ipv6Only: s.ipv6Only, balance: s.balance, slots, inherited }, log)
    if (adopted > 0 && carried === null) log.info({ slots: adopted }, `systemd: adopted the listeners of ${adopted} slots (LISTEN_FDS): connections queued on them are served now`)
  }
  const spawner = binding !== null && carried !== null ? adoptingSpawner(binding, carried, spawnWorker) : spawnWorker
  const supervisor = new Supervisor({ settings, log, clock: systemClock, sockets, spawner, notifier })
  // A SIGTERM while the workers boot shuts down what has started (lib/cli.ts).
  options.signal?.addEventListener('abort', () => { void supervisor.close() }, { once: true })
  try {
    options.signal?.throwIfAborted()
    if (carried !== null) await supervisor.restore(carried)
    else await supervisor.open(slots)
    if (carried?.metricsFd != null) await supervisor.serveMetrics(s.metricsPort ?? 0, s.host, carried.metricsFd)
    else if (s.metricsPort !== undefined) await supervisor.serveMetrics(s.metricsPort, s.host)
  } catch (err) {
    // The caller reports the error: a failed start says nothing else.
    await supervisor.shutdown(0, true)
    throw err
  }
  logStarted(supervisor, settings, sockets, log)
  for (const slot of supervisor.snapshot().slots) notifier.store(slot.index, slot.fds)
  notifier.ready(`${slots} workers serving ${supervisor.addresses.join(', ')}`)
  if (carried !== null) supervisor.rollAdopted(carried)
  return supervisor
}

function logStarted (supervisor: Supervisor, settings: Settings, sockets: SlotSockets, log: Logger): void {
  const { addresses } = supervisor
  const slots = supervisor.slots()
  for (const s of slots) {
    log.info({ slot: s.slot, workerPid: s.pid, addresses }, `slot ${s.slot + 1} of ${slots.length}: worker ${s.pid} serving ${addresses.join(', ')}`)
  }
  supervisor.logTls()
  if (sockets.balancer === 'cluster') {
    const why = settings.fallbackReason ?? 'forced by --balancer cluster'
    log.info({ balancer: 'cluster', reason: why },
      `safety nets: balancer cluster round-robin (${why}): the supervisor accepts every connection and passes it to a worker; no socket handoff, no steering`)
  } else {
    const migrate = readMigrateReq()
    log.info({ balancer: 'reuseport', handoff: true, tcpMigrateReq: migrate, steering: sockets.steering },
      `safety nets: socket handoff on; net.ipv4.tcp_migrate_req ${migrate === null ? 'unavailable (Linux < 5.14)' : migrate ? 'on' : 'off'}; classic BPF steering ${sockets.steering ? 'attached on demand' : 'unavailable'}`)
  }
  if (supervisor.metricsPort !== null) log.info(`metrics: http://${addresses[0]?.replace(/:\d+$/, '')}:${supervisor.metricsPort}/metrics`)
}

/** net.ipv4.tcp_migrate_req of this network namespace: null before Linux 5.14. */
export function readMigrateReq (): boolean | null {
  try {
    return fs.readFileSync('/proc/sys/net/ipv4/tcp_migrate_req', 'utf8').trim() === '1'
  } catch {
    return null
  }
}
