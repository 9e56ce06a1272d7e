// A supervisor started by npm or npx follows its parent (issue 17.4).
// `npx fastify-reuseport start` and `npm start` without `exec` put npm
// between the user and us: a TERM to npm ended npm (143) and left the
// supervisor and its workers serving, port and all. npm passes SIGTERM and
// SIGINT to its child (@npmcli/run-script's signal manager), but that child
// may be the `sh -c` of an npm script, which dies of it without passing it
// on; SIGHUP is never passed on.
//
// So when our parent is npm or npx (npx's process calls itself `npm exec`),
// or is an `sh -c` whose parent is, we ask the kernel for SIGTERM when that
// parent exits (PR_SET_PDEATHSIG, through the addon), and shut down
// gracefully on it, as on any SIGTERM. Past an `sh -c` the npm process is
// also watched once a second, for an npm that dies of SIGKILL and leaves the
// shell waiting. Not as PID 1 (a container's entrypoint has no parent to
// follow), not under systemd (INVOCATION_ID, or a parent of PID 1: the service
// manager stops us itself), and not for an interactive shell or anything else
// as the parent: a job the user started to outlive it stays.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { loadNative } from '../common/native'

/** npm or npx from a process's command line: node's argv, or the title npm sets ('npm exec ...'). */
export function launcherOf (cmdline: string): 'npm' | 'npx' | null {
  const args = cmdline.split(/[\0 ]+/).filter(Boolean)
  for (const arg of args.slice(0, 2)) {
    const name = path.basename(arg)
    if (name === 'npm' || name === 'npm-cli.js') return args.includes('exec') && name === 'npm' ? 'npx' : 'npm'
    if (name === 'npx' || name === 'npx-cli.js') return 'npx'
  }
  return null
}

/** A non-interactive `sh -c <command>`, as npm runs scripts and bins. */
export function isShellC (cmdline: string): boolean {
  const [shell, flag] = cmdline.split('\0')
  return /^(?:.*\/)?(?:sh|dash|bash)$/.test(shell ?? '') && flag === '-c'
}

export interface ParentFacts {
  pid: number
  ppid: number
  /** INVOCATION_ID: set by systemd for every unit it runs. */
  underSystemd: boolean
  parent: string
  /** The parent's parent's pid and command line, when the parent is a shell. */
  grandparent: { pid: number, cmdline: string } | null
}

/** Which process to follow: our parent (pdeathsig), and npm past an `sh -c` (watched); null: none. */
export function parentToFollow (f: ParentFacts): { launcher: 'npm' | 'npx', watch: number | null } | null {
  if (f.pid === 1 || f.ppid === 1 || f.underSystemd) return null
  const direct = launcherOf(f.parent)
  if (direct !== null) return { launcher: direct, watch: null }
  if (!isShellC(f.parent) || f.grandparent === null) return null
  const behind = launcherOf(f.grandparent.cmdline)
  return behind === null ? null : { launcher: behind, watch: f.grandparent.pid }
}

function readCmdline (pid: number): string {
  try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8') } catch { return '' }
}

function ppidOf (pid: number): number {
  try { return Number(/^PPid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) } catch { return 0 }
}

/** Follows an npm or npx parent; says which, or null. Its death is delivered as a SIGTERM to this process. */
export function followParent (env: NodeJS.ProcessEnv = process.env): 'npm' | 'npx' | null {
  if (process.platform !== 'linux') return null
  const ppid = process.ppid
  const parent = readCmdline(ppid)
  const gp = isShellC(parent) ? ppidOf(ppid) : 0
  const follow = parentToFollow({
    pid: process.pid,
    ppid,
    underSystemd: env.INVOCATION_ID !== undefined,
    parent,
    grandparent: gp > 0 ? { pid: gp, cmdline: readCmdline(gp) } : null
  })
  if (follow === null) return null
  const { binding } = loadNative()
  const gone = (): void => { process.kill(process.pid, 'SIGTERM') }
  try {
    // Read after the signal is set: a parent that died before sends nothing.
    if ((binding?.setParentDeathSignal(os.constants.signals.SIGTERM) ?? ppid) !== ppid) setImmediate(gone)
  } catch { /* no prctl: the watch below still covers npm behind a shell */ }
  if (follow.watch !== null) {
    const watched = follow.watch
    const timer = setInterval(() => {
      try { process.kill(watched, 0) } catch { clearInterval(timer); gone() }
    }, 1000)
    timer.unref()
  }
  return follow.launcher
}
