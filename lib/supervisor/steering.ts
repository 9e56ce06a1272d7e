// Classic BPF programs for SO_ATTACH_REUSEPORT_CBPF. A program's return
// value is the index of the socket in the reuseport group that gets a new
// connection; indices follow the order of listen() calls, and an index out of
// range falls back to the kernel's hash (socket(7), net/core/sock_reuseport.c).

const BPF_LD_W_ABS = 0x20
const BPF_JMP_JGE_K = 0x35
const BPF_RET_K = 0x06
// A SYN carries no payload to hash on: use the kernel's per-packet random
// number (SKF_AD_OFF + SKF_AD_RANDOM, include/uapi/linux/filter.h), a u32
// over its whole range (bpf_user_rnd_u32).
const SKF_AD_RANDOM = (0xfffff000 + 56) >>> 0
const RANGE = 2 ** 32
// Each allowed index costs a compare and a return: 2000 of them stay well
// inside BPF_MAXINSNS (4096).
const MAX_SOCKETS = 2000

/**
 * "Each new connection goes to socket index i with probability weights[i] ÷
 * sum(weights)": weights[i] >= 0 is socket i's share, 0 means never. Weights 1
 * for some indices and 0 for the others is "uniform among these".
 *
 * The program loads a random u32 and compares it against cumulative
 * thresholds over the u32 range: `ld rand; jge #t1 → next; ret i1; jge #t2 →
 * next; ret i2; …; ret in`.
 */
export function steerProgram (weights: readonly number[]): Uint32Array {
  if (!Array.isArray(weights) || weights.length === 0 || weights.length > MAX_SOCKETS ||
    !weights.every(w => typeof w === 'number' && Number.isFinite(w) && w >= 0) || !weights.some(w => w > 0)) {
    throw new TypeError(`steerProgram needs 1 to ${MAX_SOCKETS} finite weights >= 0 (one per socket index), at least one > 0, received ${JSON.stringify(weights)}`)
  }
  const allowed: number[] = []
  let total = 0
  for (let i = 0; i < weights.length; i++) {
    if ((weights[i] as number) > 0) {
      allowed.push(i)
      total += weights[i] as number
    }
  }
  const last = allowed[allowed.length - 1] as number
  if (allowed.length === 1) return Uint32Array.of(BPF_RET_K, 0, 0, last)
  const insns: number[] = [BPF_LD_W_ABS, 0, 0, SKF_AD_RANDOM]
  let cumulative = 0
  for (const i of allowed.slice(0, -1)) {
    cumulative += weights[i] as number
    // Random values below the threshold go to i; at or above, on to the next.
    const threshold = Math.min(RANGE - 1, Math.round(cumulative / total * RANGE))
    insns.push(BPF_JMP_JGE_K, 1, 0, threshold, BPF_RET_K, 0, 0, i)
  }
  insns.push(BPF_RET_K, 0, 0, last)
  return Uint32Array.from(insns)
}
