// The supervisor's tick, at the cadence lib/common/cadence.ts decides: a timer
// re-armed after every tick with the delay asked for then, and pulled in by
// wake() on a sign of traffic (a worker reporting busy).
import type { Clock, Timer } from './clock'

export class Ticker {
  private timer: Timer | null = null
  private dueAt = 0
  private stopped = false

  constructor (private readonly clock: Clock, private readonly tick: () => void, private readonly delay: () => number) {
    this.arm(delay())
  }

  private arm (ms: number): void {
    this.dueAt = this.clock.now() + ms
    this.timer = this.clock.setTimeout(this.run, ms)
    // Nothing here keeps the process alive: the workers' channels and the sockets do.
    this.timer.unref?.()
  }

  private readonly run = (): void => {
    this.timer = null
    if (this.stopped) return
    this.tick()
    if (!this.stopped) this.arm(this.delay())
  }

  /** The next tick comes within ms. */
  wake (ms: number): void {
    if (this.stopped || this.timer === null || this.dueAt - this.clock.now() <= ms) return
    this.clock.clearTimeout(this.timer)
    this.arm(ms)
  }

  stop (): void {
    this.stopped = true
    this.clock.clearTimeout(this.timer)
    this.timer = null
  }
}
