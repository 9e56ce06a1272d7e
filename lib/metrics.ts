import http from 'node:http'
import { REPLACE_REASONS } from './policy'
import type { SlotInfo, SlotState } from './supervisor'

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

/** Serves GET /metrics from the supervisor, so that every scrape sees every slot. */
export function serveMetrics (port: number, host: string, slots: () => SlotInfo[]): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && !req.url?.startsWith('/metrics?'))) {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(renderMetrics(slots()))
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve(server)
    })
  })
}
