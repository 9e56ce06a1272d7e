// Time as the supervisor sees it: injected, so that its rules (backoff,
// crash loops, stalls, hand-off delays) run in tests without waiting.
export interface Timer { unref?: () => unknown }

export interface Clock {
  now: () => number
  /** Keeps the process alive until it fires, unless unref'd. */
  setTimeout: (fn: () => void, ms: number) => Timer
  clearTimeout: (timer: Timer | null) => void
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: timer => { if (timer !== null) clearTimeout(timer as NodeJS.Timeout) }
}

export function sleep (clock: Clock, ms: number): Promise<void> {
  return new Promise(resolve => { clock.setTimeout(resolve, ms) })
}
