import http from 'node:http'
import { imbalance } from './balance'
import { REPLACE_REASONS } from './policy'
import type { SlotInfo, SlotState } from './handle'
import { processMemory, renderProcessMemory } from './memory'

const STATES: SlotState[] = ['starting', 'ready', 'draining', 'stalled', 'dead']

function escape (value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

/**
 * Per-slot metrics in the Prometheus text exposition format (0.0.4), the
 * format Prometheus, VictoriaMetrics, Datadog and OpenTelemetry collectors
 * all scrape, and the one fastify-metrics and prom-client use.
 */
export function renderMetrics (slots: SlotInfo[]): string {
  const out: string[] = []
  const metric = (name: string, type: 'gauge' | 'counter', help: string, rows: Array<[Record<string, string>, number]>): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
    for (const [labels, value] of rows) {
      const l = Object.entries(labels).map(([k, v]) => `${k}="${escape(v)}"`).join(',')
      out.push(`${name}{${l}} ${value}`)
    }
  }
  const slot = (s: SlotInfo): Record<string, string> => ({ slot: String(s.slot) })
  metric('fastify_reuseport_slot_state', 'gauge', 'Slot state: 1 for the current one.',
    slots.flatMap(s => STATES.map(state => [{ ...slot(s), state }, s.state === state ? 1 : 0] as [Record<string, string>, number])))
  metric('fastify_reuseport_slot_pid', 'gauge', 'Pid of the worker serving the slot (0: none).', slots.map(s => [slot(s), s.pid ?? 0]))
  metric('fastify_reuseport_slot_accepted_connections_total', 'counter', 'Connections accepted by the slot\'s workers.', slots.map(s => [slot(s), s.accepted]))
  metric('fastify_reuseport_slot_accept_queue', 'gauge', 'Connections waiting in the slot\'s accept queue (TCP_INFO).', slots.map(s => [slot(s), s.queued]))
  metric('fastify_reuseport_slot_open_connections', 'gauge', 'Connections the slot\'s worker holds open.', slots.map(s => [slot(s), s.open]))
  out.push('# HELP fastify_reuseport_imbalance Open connections of the busiest serving slot divided by the mean (1: even).',
    '# TYPE fastify_reuseport_imbalance gauge',
    `fastify_reuseport_imbalance ${Math.round(imbalance(slots.filter(s => s.state === 'ready').map(s => s.open)) * 1000) / 1000}`)
  metric('fastify_reuseport_slot_tls_handshakes_total', 'counter', 'TLS handshakes completed by the slot\'s workers: resumed (a session ticket was accepted) or full.',
    slots.flatMap(s => [[{ ...slot(s), kind: 'resumed' }, s.tlsResumed], [{ ...slot(s), kind: 'full' }, s.tlsFull]] as Array<[Record<string, string>, number]>))
  metric('fastify_reuseport_slot_event_loop_delay_seconds', 'gauge', 'Worst event-loop delay the worker reported in its last interval.', slots.map(s => [slot(s), s.loopDelayMs / 1000]))
  metric('fastify_reuseport_slot_restarts_total', 'counter', 'Workers started on the slot after its first.', slots.map(s => [slot(s), s.restarts]))
  metric('fastify_reuseport_slot_stalls_total', 'counter', 'Times the slot was steered out as stalled.', slots.map(s => [slot(s), s.stalls]))
  metric('fastify_reuseport_slot_replacements_total', 'counter', 'Workers replaced by the self-healing rules (hung, memory, requests).',
    slots.flatMap(s => REPLACE_REASONS.map(reason => [{ ...slot(s), reason }, s.replacements[reason]] as [Record<string, string>, number])))
  metric('fastify_reuseport_slot_handed_off_connections_total', 'counter', 'Connections from the slot\'s queue passed to other workers while it had none.', slots.map(s => [slot(s), s.handedOff]))
  metric('fastify_reuseport_slot_last_exit_info', 'gauge', 'How the slot\'s last worker exited unexpectedly.',
    slots.filter(s => s.lastExit !== null).map(s => [{ ...slot(s), reason: s.lastExit as string }, 1]))
  return out.join('\n') + '\n'
}

export interface MetricsServerOptions {
  /** Connections open at once; the kernel's next ones are accepted and closed at once. Default 16. */
  maxConnections?: number
  /** Time a client has to send its request headers, ms. Default 5000. */
  headersTimeout?: number
  /** Time a client has to send its whole request, ms. Default 10000. */
  requestTimeout?: number
  /** Accept errors (EMFILE, ENFILE under fd pressure) go here; the server keeps listening. */
  onError?: (err: Error) => void
  /** Serve this listening fd (carried over an in-place upgrade) instead of binding port and host. */
  fd?: number
}

const PATH = /^\/metrics(\?|$)/

/**
 * Serves GET (and HEAD) /metrics from the supervisor, so that every scrape sees
 * every slot. The supervisor must outlive any client, so the server is
 * bounded: few connections, short header and request deadlines, and no
 * keep-alive (a scraper comes back every 15 s or so, a new connection costs
 * nothing next to that). Without these, idle or slowloris connections held
 * supervisor fds until it could not spawn a worker (issue 13).
 */
export function serveMetrics (port: number, host: string, slots: () => SlotInfo[], options: MetricsServerOptions = {}): Promise<http.Server> {
  const { maxConnections = 16, headersTimeout = 5000, requestTimeout = 10000, onError = () => {}, fd } = options
  const server = http.createServer({
    headersTimeout,
    requestTimeout,
    keepAlive: false,
    // headersTimeout and requestTimeout (which also cover a client that sends
    // nothing) are only enforced when this check runs: every 30 s by default.
    connectionsCheckingInterval: Math.min(1000, headersTimeout)
  }, (req, res) => {
    res.setHeader('connection', 'close')
    if (!PATH.test(req.url ?? '')) {
      res.writeHead(404).end()
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end()
      return
    }
    // The slots, then the supervisor's own memory (lib/memory.ts).
    const body = renderMetrics(slots()) + renderProcessMemory(processMemory())
    // Node sends no body for HEAD, but the same headers as GET.
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(body) }).end(body)
  })
  server.maxConnections = maxConnections
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    const listening = (): void => {
      server.off('error', reject)
      // An accept that fails (EMFILE) is emitted as 'error' on the server:
      // unhandled, it would take the supervisor and every slot down with it.
      // libuv has already closed the connection that could not be accepted.
      server.on('error', onError)
      resolve(server)
    }
    if (fd !== undefined) server.listen({ fd }, listening)
    else server.listen(port, host, listening)
  })
}
