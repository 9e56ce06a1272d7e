// Executes the steering decisions of lib/supervisor/balance.ts on one reuseport group:
// a single classic BPF program, attached through slot 0's sockets (any socket
// of a group attaches for all of it) or detached, back to the kernel's hash.
import type { Logger } from 'pino'
import { rebalanceDecision, rebalanceHistory, steeringState, steeringWeights, type RebalanceDecision, type RebalanceHistory, type SlotLoad, type SteeringState } from './balance'
import type { Listener } from '../common/listener'
import type { NativeBinding } from '../common/native'
import { steerProgram } from './steering'

export class Steerer {
  /** This kernel lets us attach a program (SO_ATTACH_REUSEPORT_CBPF needs no privilege, but a kernel may lack it). */
  readonly available: boolean
  private readonly state: SteeringState = steeringState()
  private readonly history: RebalanceHistory = rebalanceHistory()
  /** The weights attached now; null: none. */
  private attached: readonly number[] | null = null

  constructor (
    private readonly binding: NativeBinding,
    private readonly group: Listener[],
    private readonly log: Logger,
    private readonly balance: boolean,
    slots: number
  ) {
    this.available = this.probe(slots)
  }

  private probe (slots: number): boolean {
    const fd = this.group[0]?.fd
    if (fd === undefined) return false
    try {
      this.binding.attachSteering(fd, steerProgram(Array.from({ length: slots }, () => 1)))
      this.binding.detachSteering(fd)
      return true
    } catch {
      return false
    }
  }

  /**
   * One program for every purpose: slots that cannot take connections get
   * weight 0, and with balancing the slots holding fewer get more. Nothing is
   * attached while every slot serves and the load is even, so short
   * connections keep the plain hash. A setsockopt only when the weights changed.
   */
  update (loads: SlotLoad[], now: number): void {
    if (!this.available) return
    const weights = steeringWeights(loads, this.state, now, { balance: this.balance })
    if (weights === this.attached) return
    // All zero: no slot serves, and the hash is as good as anything.
    const program = weights === null || !weights.some(w => w > 0) ? null : steerProgram(weights)
    for (const l of this.group) {
      try {
        if (program === null) this.binding.detachSteering(l.fd)
        else this.binding.attachSteering(l.fd, program)
      } catch (err) {
        this.log.warn({ err }, 'steering update failed; the kernel hash stays in charge')
      }
    }
    this.attached = weights
  }

  /** Which slot should end how many kept-alive connections now. Recorded as done: act on it. */
  rebalance (loads: SlotLoad[], now: number): RebalanceDecision {
    return rebalanceDecision(loads, this.history, now, { balance: this.balance })
  }
}
