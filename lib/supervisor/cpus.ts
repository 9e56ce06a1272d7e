import fs from 'node:fs'
import os from 'node:os'

/**
 * CPUs this process may use, as a container sees them: CPU affinity
 * (os.availableParallelism follows sched_getaffinity) capped by the cgroup v2
 * quota in cpu.max, or v1's cfs_quota_us / cfs_period_us.
 */
export function availableCpus (): number {
  const affinity = os.availableParallelism()
  const quota = cgroupQuota()
  return Math.max(1, quota === null ? affinity : Math.min(affinity, Math.ceil(quota)))
}

function cgroupQuota (): number | null {
  const v2 = read('/sys/fs/cgroup/cpu.max')
  if (v2 !== null) {
    const [max, period] = v2.split(/\s+/)
    if (max !== 'max' && Number(max) > 0 && Number(period) > 0) return Number(max) / Number(period)
    return null
  }
  const q = Number(read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us'))
  const p = Number(read('/sys/fs/cgroup/cpu/cpu.cfs_period_us'))
  return q > 0 && p > 0 ? q / p : null
}

function read (file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8').trim()
  } catch {
    return null
  }
}
