// Balancing connections across slots (docs/design.md, "Few long-lived
// connections"). The kernel hashes each new connection to a socket: fair for
// many short connections, lopsided for a proxy's small keep-alive pool that
// then carries all the traffic for hours (4 connections on 2 workers split 3–1
// or 4–0 in 62.5% of cases). Two remedies, decided here and executed by the
// supervisor:
// - steering: weight the cBPF program so new connections go to the slots
//   below their share (steeringWeights);
// - rebalancing: ask a slot above its share to end some kept-alive
//   connections gracefully, so that their clients reconnect and are steered
//   (rebalanceDecision).
// Pure functions over samples: no I/O, no timers. Each keeps its memory in a
// record the caller owns and passes back on every call.

/** What the supervisor knows about a slot, in slot (socket index) order. */
export interface SlotLoad {
  /** It may get new connections: its worker is ready, neither stalled nor retiring. */
  eligible: boolean
  /** Connections its worker holds open (last health report). */
  open: number
  /** Connections its workers have accepted so far, monotonic: tells short-lived connections from long-lived ones. Optional. */
  accepted?: number
}

export interface BalanceOptions {
  /** Master switch. Off: steering only keeps ineligible slots out, and nothing is shed. Default true. */
  balance: boolean
  /**
   * The slots count as even while the busiest holds at most max(1,
   * tolerance × mean) connections more than the least busy. Default 0.1:
   * 3–1 is uneven, 505–495 is even.
   */
  tolerance: number
  /** Uneven this long (and long-lived connections) before load-aware weights attach, ms. Default 200. */
  steerHoldMs: number
  /** Even this long before load-aware weights give way to the plain hash again, ms. Default 1000. */
  evenHoldMs: number
  /** At most one load-driven program change per this many ms; eligibility changes apply at once. Default 250. */
  steerIntervalMs: number
  /**
   * Share kept by a slot already at or above its share, relative to the
   * deficit of one connection at a mean of 1 connection per slot: weight =
   * max(0, ceil(mean) − open) + floorShare × max(1, mean). Default 0.05: 3–1
   * sends 92% of new connections to the second slot, 600–400 sends 83%.
   */
  floorShare: number
  /** A slot sheds when it holds at least ceil(total ÷ eligible slots) + shedMargin connections. Default 1. */
  shedMargin: number
  /** ... for at least this long, ms. Default 500. */
  shedHoldMs: number
  /**
   * Pause after a shed. Evening out n slots may take n - 1 sheds; each shed
   * beyond those doubles the pause, until the slots have been even for
   * evenHoldMs. Default 500.
   */
  shedCooldownMs: number
  /** Upper bound of the doubled pause, ms. Default 30000: at most 2 sheds a minute when rebalancing cannot help. */
  shedMaxCooldownMs: number
  /** No shedding above this many connections per slot on average: the hash spreads that many well enough. Default 16. */
  shedMaxMean: number
}

/** The defaults, documented on BalanceOptions. */
export const BALANCE_DEFAULTS: Readonly<BalanceOptions> = Object.freeze({
  balance: true,
  tolerance: 0.1,
  steerHoldMs: 200,
  evenHoldMs: 1000,
  steerIntervalMs: 250,
  floorShare: 0.05,
  shedMargin: 1,
  shedHoldMs: 500,
  shedCooldownMs: 500,
  shedMaxCooldownMs: 30000,
  shedMaxMean: 16
})

/** Busiest ÷ mean of the open counts: 1 when even, and when there is nothing to compare (no slot, no connection). */
export function imbalance (open: readonly number[]): number {
  if (open.length === 0) return 1
  let max = 0
  let sum = 0
  for (const n of open) {
    sum += n
    if (n > max) max = n
  }
  return sum > 0 ? max / (sum / open.length) : 1
}

interface Group {
  /** Socket indices of the eligible slots. */
  indices: number[]
  open: number[]
  total: number
  mean: number
  /** Each slot's share: ceil(mean). */
  share: number
  spread: number
  even: boolean
}

function group (slots: readonly SlotLoad[], tolerance: number): Group {
  const indices: number[] = []
  const open: number[] = []
  for (let i = 0; i < slots.length; i++) {
    const s = slots[i] as SlotLoad
    if (s.eligible) {
      indices.push(i)
      open.push(Math.max(0, s.open))
    }
  }
  const total = open.reduce((a, b) => a + b, 0)
  const mean = open.length > 0 ? total / open.length : 0
  const spread = open.length > 0 ? Math.max(...open) - Math.min(...open) : 0
  return { indices, open, total, mean, share: Math.ceil(mean), spread, even: spread <= Math.max(1, tolerance * mean) }
}

/**
 * How long connections live, from Little's law: more accepted during a
 * window than are open means they last less than the window, and steering or
 * shedding by open counts would chase noise (every sample of many short
 * connections is uneven by chance, and the next one differently).
 */
interface Turnover {
  at: number | null
  accepted: number
  /** null until one window has been measured (or when the slots report no accepted counts). */
  shortLived: boolean | null
}

function newTurnover (): Turnover {
  return { at: null, accepted: 0, shortLived: null }
}

function measureTurnover (t: Turnover, slots: readonly SlotLoad[], total: number, now: number, windowMs: number): boolean {
  if (!slots.some(s => s.accepted !== undefined)) return false
  let accepted = 0
  for (const s of slots) accepted += s.accepted ?? 0
  if (t.at === null || accepted < t.accepted) {
    // First sample, or a slot went away with its count: start a window.
    t.at = now
    t.accepted = accepted
  } else if (now - t.at >= windowMs) {
    t.shortLived = accepted - t.accepted > total
    t.at = now
    t.accepted = accepted
  }
  // Unknown counts as short-lived: no decision on less than one window.
  return t.shortLived !== false
}

/** The memory of steeringWeights, owned by the caller. */
export interface SteeringState {
  /** The decision last returned: weights per socket index, or null (plain hash). */
  weights: readonly number[] | null
  changedAt: number
  loadAware: boolean
  unevenSince: number | null
  evenSince: number | null
  turnover: Turnover
}

export function steeringState (): SteeringState {
  return { weights: null, changedAt: -Infinity, loadAware: false, unevenSince: null, evenSince: null, turnover: newTurnover() }
}

function sameEligibility (a: readonly number[] | null, b: readonly number[] | null): boolean {
  if (a === null || b === null) return a === b
  return a.length === b.length && a.every((w, i) => (w > 0) === ((b[i] as number) > 0))
}

// Weights are whole percents; a change of fewer points is not worth a setsockopt.
const MATERIAL_POINTS = 5

function materiallyDifferent (a: readonly number[] | null, b: readonly number[] | null): boolean {
  if (a === null || b === null) return a !== b
  return a.some((w, i) => Math.abs(w - (b[i] as number)) >= MATERIAL_POINTS)
}

/**
 * The steering program's weights (socket index i gets new connections in
 * proportion to weights[i], see steerProgram), or null: detach, let the
 * kernel hash. Ineligible slots always get 0; when every slot is eligible and
 * the load is even, null. Load-aware weights attach after the slots have been
 * uneven for steerHoldMs with long-lived connections, and give way after
 * evenHoldMs of even load or as soon as connections turn out short-lived.
 * Returns the very same array (===) while nothing material changed, so the
 * caller can skip the setsockopt.
 */
export function steeringWeights (slots: readonly SlotLoad[], state: SteeringState, now: number,
  opts: Partial<BalanceOptions> = {}): readonly number[] | null {
  const o = { ...BALANCE_DEFAULTS, ...opts }
  const g = group(slots, o.tolerance)
  const uniform = g.indices.length === 0 || g.indices.length === slots.length ? null : slots.map(s => s.eligible ? 1 : 0)

  let next: readonly number[] | null = uniform
  if (o.balance && g.indices.length >= 2) {
    const shortLived = measureTurnover(state.turnover, slots, g.total, now, o.steerHoldMs)
    state.unevenSince = g.even ? null : state.unevenSince ?? now
    state.evenSince = g.even ? state.evenSince ?? now : null
    if (shortLived) state.loadAware = false
    else if (state.unevenSince !== null && now - state.unevenSince >= o.steerHoldMs) state.loadAware = true
    else if (state.evenSince !== null && now - state.evenSince >= o.evenHoldMs) state.loadAware = false
    if (state.loadAware) next = loadWeights(slots, g, o.floorShare) ?? uniform
  } else {
    state.loadAware = false
    state.unevenSince = null
    state.evenSince = null
  }

  const previous = state.weights
  const apply = !sameEligibility(previous, next) ||
    (materiallyDifferent(previous, next) && now - state.changedAt >= o.steerIntervalMs)
  if (apply) {
    state.weights = next
    state.changedAt = now
  }
  return state.weights
}

/** Whole-percent weights filling each eligible slot's deficit to ceil(mean); null when they come out uniform over every slot. */
function loadWeights (slots: readonly SlotLoad[], g: Group, floorShare: number): number[] | null {
  const floor = floorShare * Math.max(1, g.mean)
  const raw = g.open.map(n => Math.max(0, g.share - n) + floor)
  const sum = raw.reduce((a, b) => a + b, 0)
  const weights: number[] = slots.map(() => 0)
  g.indices.forEach((index, k) => { weights[index] = Math.max(1, Math.round(100 * (raw[k] as number) / sum)) })
  const first = weights[g.indices[0] as number]
  return g.indices.length === slots.length && weights.every(w => w === first) ? null : weights
}

/** The memory of rebalanceDecision, owned by the caller. */
export interface RebalanceHistory {
  /** Per socket index: since when the slot has held more than its share, or null. */
  overSince: Array<number | null>
  lastShedAt: number
  /** Sheds since the slots were last even for evenHoldMs: each one doubles the pause. */
  streak: number
  evenSince: number | null
  turnover: Turnover
}

export function rebalanceHistory (): RebalanceHistory {
  return { overSince: [], lastShedAt: -Infinity, streak: 0, evenSince: null, turnover: newTurnover() }
}

export type RebalanceDecision =
  | { slot: number, count: number, reason: string }
  | { slot: null, count: 0, reason: string }

function none (reason: string): RebalanceDecision {
  return { slot: null, count: 0, reason }
}

/**
 * Which slot should end how many kept-alive connections, so that their
 * clients reconnect and steering places them on the slots below their share.
 * A slot qualifies once it has held at least ceil(total ÷ eligible) +
 * shedMargin connections for shedHoldMs; the one furthest above its share
 * sheds its excess, one slot per decision. After each shed: a pause of
 * shedCooldownMs; past the n - 1 sheds that evening out n slots may take, it
 * doubles with every shed until the slots have been even for evenHoldMs, so
 * that it cannot churn where rebalancing does not help. Nothing for many connections per slot (shedMaxMean) or short-lived
 * ones. A decision to shed is recorded in history: call it only to act on it.
 */
export function rebalanceDecision (slots: readonly SlotLoad[], history: RebalanceHistory, now: number,
  opts: Partial<BalanceOptions> = {}): RebalanceDecision {
  const o = { ...BALANCE_DEFAULTS, ...opts }
  if (!o.balance) return none('balancing is off')
  const g = group(slots, o.tolerance)
  if (g.indices.length < 2) return none('fewer than 2 slots serve')

  history.evenSince = g.even ? history.evenSince ?? now : null
  if (history.evenSince !== null && now - history.evenSince >= o.evenHoldMs) history.streak = 0
  const overSince = history.overSince
  overSince.length = slots.length
  slots.forEach((s, i) => {
    const over = s.eligible && !g.even && s.open - g.share >= o.shedMargin
    overSince[i] = over ? overSince[i] ?? now : null
  })
  const shortLived = measureTurnover(history.turnover, slots, g.total, now, o.shedHoldMs)

  if (g.even) return none('the slots are even')
  if (g.mean > o.shedMaxMean) {
    return none(`${Math.round(g.mean * 10) / 10} connections per slot on average, more than shedMaxMean ${o.shedMaxMean}: the hash spreads that many well enough`)
  }
  if (shortLived) return none('connections are short-lived: new ones spread by steering alone')
  // Evening out n slots may take n - 1 sheds: those come at the base pause.
  const doublings = Math.max(0, history.streak - (g.indices.length - 1))
  const pause = history.streak === 0 ? 0 : Math.min(o.shedMaxCooldownMs, o.shedCooldownMs * 2 ** doublings)
  if (now - history.lastShedAt < pause) return none(`cooling down after a shed (${pause} ms)`)

  let best = -1
  for (let i = 0; i < slots.length; i++) {
    const since = overSince[i]
    if (since === null || since === undefined || now - since < o.shedHoldMs) continue
    if (best < 0 || (slots[i] as SlotLoad).open > (slots[best] as SlotLoad).open) best = i
  }
  if (best < 0) return none(`no slot has held ${o.shedMargin} or more connections above its share of ${g.share} for ${o.shedHoldMs} ms`)

  const open = (slots[best] as SlotLoad).open
  const count = open - g.share
  history.lastShedAt = now
  history.streak++
  // The counts move after a shed: every slot must qualify afresh.
  overSince.fill(null)
  return {
    slot: best,
    count,
    reason: `slot ${best + 1} of ${slots.length} has held ${open} connections, ${count} above its share of ${g.share}, for ${o.shedHoldMs} ms or more`
  }
}
