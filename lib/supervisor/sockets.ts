// Where connections come from, behind one interface: the slot sockets of a
// reuseport group (Linux with the addon), or nothing of ours at all under
// Node's cluster balancer, where the workers' listen() goes through the
// cluster primary. The rest of the supervisor never asks which.
import type { ChildProcess } from 'node:child_process'
import type { Logger } from 'pino'
import { closeListeners, openListeners, type Listener } from '../common/listener'
import type { NativeBinding } from '../common/native'
import type { RebalanceDecision, SlotLoad } from './balance'
import { Handoff } from './handoff'
import { Steerer } from './steerer'

/** Serves an orphaned slot's queue (lib/supervisor/handoff.ts). */
export interface QueueHandoff {
  readonly count: number
  close: () => void
}

export interface SlotSockets {
  readonly balancer: 'reuseport' | 'cluster'
  /** The port every slot binds (after the first open when it was 0). */
  readonly port: number
  readonly addresses: string[]
  /** Whether a steering program can be attached. */
  readonly steering: boolean
  /** Opens slot `index`'s sockets, in slot order: socket i of the group is slot i. */
  open: (index: number) => Listener[]
  close: (listeners: Listener[]) => void
  /** Connections waiting in the accept queues (TCP_INFO). */
  queued: (listeners: Listener[]) => number
  /** Calls onQueued once, when a connection waits in any of these queues; returns what stops the watch. */
  watch: (listeners: Listener[], onQueued: () => void) => () => void
  /** Applies the steering weights the loads call for (lib/supervisor/steerer.ts). */
  steer: (loads: SlotLoad[], now: number) => void
  rebalance: (loads: SlotLoad[], now: number) => RebalanceDecision
  /** Starts serving a slot's queue through live workers; null where there is no queue of ours. */
  handoff: (listeners: Listener[], target: () => ChildProcess | null) => QueueHandoff | null
  /** As PID 1, reaps orphaned processes other than `keep`. */
  reap: (keep: number[]) => void
  /** What the first ready worker says it serves: under the cluster balancer, the only source of the port and addresses. */
  adopt: (served: string[]) => void
}

export interface SocketSpec {
  addresses: Array<{ address: string, family: 4 | 6 }>
  port: number
  backlog: number
  ipv6Only: boolean
  balance: boolean
  slots: number
  /** Listeners handed down by systemd (its fd store, or socket activation), by slot: adopted instead of opened. */
  inherited: Map<number, Listener[]>
}

export function reuseportSockets (binding: NativeBinding, spec: SocketSpec, log: Logger): SlotSockets {
  let template = spec.addresses
  let port = spec.port
  let steerer: Steerer | null = null
  const sockets: SlotSockets = {
    balancer: 'reuseport',
    get port () { return port },
    addresses: [],
    get steering () { return steerer?.available === true },
    open (index) {
      const listeners = spec.inherited.get(index) ?? openListeners(binding, template, { port, backlog: spec.backlog, ipv6Only: spec.ipv6Only })
      spec.inherited.delete(index)
      if (index === 0) {
        // Every later slot binds what slot 0 could bind, on its port.
        template = listeners.map(({ address, family }) => ({ address, family }))
        port = listeners[0]?.port ?? port
        sockets.addresses.push(...listeners.map(l => (l.family === 6 ? `[${l.address}]` : l.address) + ':' + l.port))
        steerer = new Steerer(binding, listeners, log, spec.balance, spec.slots)
      }
      return listeners
    },
    close: listeners => closeListeners(binding, listeners),
    watch (listeners, onQueued) {
      const watch = binding.watchReadable(listeners.map(l => l.fd), onQueued)
      return () => binding.unwatchReadable(watch)
    },
    queued (listeners) {
      let n = 0
      for (const l of listeners) {
        try { n += binding.queueInfo(l.fd).queued } catch { /* closed while retiring or shutting down */ }
      }
      return n
    },
    steer: (loads, now) => steerer?.update(loads, now),
    rebalance: (loads, now) => steerer?.rebalance(loads, now) ?? { slot: null, count: 0, reason: 'no steering' },
    handoff: (listeners, target) => new Handoff(binding, listeners, target),
    reap (keep) {
      try {
        binding.reapOrphans(keep)
      } catch (err) {
        log.warn({ err }, 'could not reap orphaned processes')
      }
    },
    adopt: () => {}
  }
  return sockets
}

/** Node's cluster round-robin: the workers listen through our cluster primary; nothing to own, steer or hand off. */
export function clusterSockets (port: number): SlotSockets {
  const addresses: string[] = []
  return {
    balancer: 'cluster',
    // Port 0: the first worker's listen() picked it.
    get port () { return Number(/:(\d+)$/.exec(addresses[0] ?? '')?.[1] ?? port) },
    addresses,
    steering: false,
    open: () => [],
    close: () => {},
    queued: () => 0,
    // The cluster primary accepts every connection itself: it is awake for each one.
    watch: () => () => {},
    steer: () => {},
    rebalance: () => ({ slot: null, count: 0, reason: 'no steering' }),
    handoff: () => null,
    reap: () => {},
    adopt (served) {
      if (addresses.length === 0) addresses.push(...served)
    }
  }
}
