// Classic BPF programs for SO_ATTACH_REUSEPORT_CBPF. A program's return
// value is the index of the socket in the reuseport group that gets a new
// connection; indices follow the order of listen() calls, and an index out of
// range falls back to the kernel's hash (socket(7), net/core/sock_reuseport.c).

const BPF_LD_W_ABS = 0x20
const BPF_ALU_MOD_K = 0x94
const BPF_JMP_JEQ_K = 0x15
const BPF_RET_K = 0x06
// A SYN carries no payload to hash on: use the kernel's per-packet random
// number (SKF_AD_OFF + SKF_AD_RANDOM, include/uapi/linux/filter.h).
const SKF_AD_RANDOM = (0xfffff000 + 56) >>> 0

/**
 * "Random among these socket indices": every new connection goes to one of
 * `indices`, uniformly; the others get none.
 */
export function steerProgram (indices: readonly number[]): Uint32Array {
  if (!Array.isArray(indices) || indices.length === 0 || indices.length > 2000 ||
    !indices.every(i => Number.isInteger(i) && i >= 0 && i <= 0xffff)) {
    throw new TypeError(`steerProgram needs 1 to 2000 socket indices (integers 0..65535), received ${JSON.stringify(indices)}`)
  }
  const insns: Array<[number, number, number, number]> = []
  if (indices.length === 1) {
    insns.push([BPF_RET_K, 0, 0, indices[0] as number])
  } else {
    insns.push([BPF_LD_W_ABS, 0, 0, SKF_AD_RANDOM], [BPF_ALU_MOD_K, 0, 0, indices.length])
    for (let j = 0; j < indices.length - 1; j++) {
      insns.push([BPF_JMP_JEQ_K, 0, 1, j], [BPF_RET_K, 0, 0, indices[j] as number])
    }
    insns.push([BPF_RET_K, 0, 0, indices[indices.length - 1] as number])
  }
  return Uint32Array.from(insns.flat())
}
