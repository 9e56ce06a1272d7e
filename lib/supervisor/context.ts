// What every part of the supervisor shares: its settings, its log, its clock,
// its sockets, the slot table and the events it emits. One value, passed
// down, so that each part can be built and tested with fakes of the others.
import type { Logger } from 'pino'
import type { WorkerConfig } from '../common/messages'
import type { Clock } from './clock'
import type { SupervisorEvents } from './handle'
import type { StartSettings } from './options'
import type { SlotSockets } from './sockets'
import type { SlotTable } from './table'
import type { TicketKeeper } from './ticket-keeper'

export interface Settings extends StartSettings {
  /** What every worker is told (its slot and control fd are added per worker). */
  config: Omit<WorkerConfig, 'slot' | 'control' | 'supervisorPid'>
  /** Why the cluster balancer runs, when it was not asked for. */
  fallbackReason: string | null
}

export type Emit = <E extends keyof SupervisorEvents>(event: E, ...args: SupervisorEvents[E]) => void

export interface Context {
  readonly settings: Settings
  readonly log: Logger
  readonly clock: Clock
  readonly sockets: SlotSockets
  readonly table: SlotTable
  readonly emit: Emit
  /** The TLS session ticket keys every worker shares. */
  readonly tickets: TicketKeeper
}
