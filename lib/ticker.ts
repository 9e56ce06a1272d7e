// The supervisor's tick, at the cadence lib/cadence.ts decides: a timer
// re-armed after every tick with the delay asked for then, and pulled in by
// wake() on a sign of traffic (a worker reporting busy).

export class Ticker {
  private timer: NodeJS.Timeout | null = null
  private dueAt = 0
  private stopped = false

  constructor (private readonly tick: () => void, private readonly delay: () => number) {
    this.arm(delay())
  }

  private arm (ms: number): void {
    this.dueAt = Date.now() + ms
    this.timer = setTimeout(this.run, ms)
    // Nothing here keeps the process alive: the workers' channels and the sockets do.
    this.timer.unref()
  }

  private readonly run = (): void => {
    this.timer = null
    if (this.stopped) return
    this.tick()
    if (!this.stopped) this.arm(this.delay())
  }

  /** The next tick comes within ms. */
  wake (ms: number): void {
    if (this.stopped || this.timer === null || this.dueAt - Date.now() <= ms) return
    clearTimeout(this.timer)
    this.arm(ms)
  }

  stop (): void {
    this.stopped = true
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }
}
