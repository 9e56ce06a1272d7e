// The worker's health reports to the supervisor (lib/common/cadence.ts decides how
// often): how late this event loop runs, so that the supervisor can steer new
// connections away from a stalled worker, and what the replacement and
// balancing rules need (open connections, RSS, requests). A blocked loop
// sends nothing, which the supervisor notices too.
//
// Lateness is the report timer's own: how long after it was due it fired.
// A block longer than the interval delays it by at least the block minus
// one interval, which is what the stall rule (a delay past --stall-timeout,
// 500 ms by default, 10 times the 50 ms interval) needs; a 10 ms histogram
// (monitorEventLoopDelay) woke the loop 100 times a second to say the same.
import type net from 'node:net'
import { alignedDelayMs, nextReportMs } from '../common/cadence'
import type { WorkerMessage } from '../common/messages'
import { acceptedConnections } from '../plugin/connections'
import type { WorkerTickets } from '../plugin/tls-keys'
import { openConnections } from './shed'

export interface HealthOptions {
  /** The busy cadence, ms. */
  healthMs: number
  /** The idle heartbeat, ms. */
  idleMs: number
}

/** Starts reporting; returns the function that stops it. */
export function reportHealth (server: net.Server, { healthMs, idleMs }: HealthOptions, counter: { requests: number }, tickets: WorkerTickets, send: (m: WorkerMessage) => void): () => void {
  let timer: NodeJS.Timeout | null = null
  let dueAt = performance.now()
  let accepted = acceptedConnections(server)
  let idle = false
  let stopped = false

  const report = (woken: boolean): void => {
    timer = null
    const now = performance.now()
    const total = acceptedConnections(server)
    const open = openConnections(server)
    const nextMs = nextReportMs({ open, acceptedSince: total - accepted, woken }, healthMs, idleMs)
    accepted = total
    idle = nextMs > healthMs
    const tls = tickets.handshakes()
    send({ type: 'health', delayMs: Math.max(0, now - dueAt), accepted: total, open, rss: process.memoryUsage.rss(), requests: counter.requests, tlsResumed: tls.resumed, tlsFull: tls.full, nextMs })
    // Idle: on the fleet's shared beat (the wall clock), never later than nextMs.
    const delay = idle ? alignedDelayMs(Date.now(), nextMs) : nextMs
    dueAt = now + delay
    timer = setTimeout(report, delay, false)
    timer.unref()
  }
  // A connection at an idle worker: report at once, and the supervisor
  // ticks fast again. One boolean test per connection otherwise.
  const onConnection = (): void => {
    if (!idle || stopped) return
    if (timer !== null) clearTimeout(timer)
    report(true)
  }
  server.on('connection', onConnection)
  dueAt = performance.now() + healthMs
  timer = setTimeout(report, healthMs, false)
  timer.unref()
  return () => {
    stopped = true
    if (timer !== null) clearTimeout(timer)
    server.off('connection', onConnection)
  }
}
