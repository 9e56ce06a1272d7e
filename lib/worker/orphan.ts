// A worker whose supervisor is gone: nobody will drain, replace or restart
// it, and it must not keep serving a port nobody owns (issue 24). Heard from
// the worker's first line on, whatever it is doing (loading the app,
// listening, serving, draining), three ways:
// - its control channel closes: the kernel closes the supervisor's end of the
//   socketpair on any death, SIGKILL included, and the end-of-file waits in
//   the socket even if it comes before we read;
// - PR_SET_PDEATHSIG (prctl(2)), the kernel's own net: SIGTERM when the
//   parent exits, whatever became of the channel's fd (an app's native code
//   may dup it into a child). It fires when the *thread* that forked us exits
//   (prctl(2), "the parent thread"), and Node forks from its main thread;
// - the parent pid, read after the death signal is set: a supervisor that
//   died before that sends no signal, and we are already someone else's.
import os from 'node:os'
import type { Channel } from '../common/channel'
import { loadNative } from '../common/native'

/** Calls gone() once, as soon as the supervisor (our parent, supervisorPid) is gone. */
export function watchSupervisor (channel: Channel, supervisorPid: number, gone: () => void): void {
  let called = false
  const once = (): void => {
    if (called) return
    called = true
    gone()
  }
  channel.on('close', once)
  // Workers ignore SIGTERM from a terminal or a process group (lib/worker.ts):
  // this one counts only when it comes from our parent's death.
  process.on('SIGTERM', () => { if (process.ppid !== supervisorPid) once() })
  let parent = process.ppid
  try {
    parent = loadNative().binding?.setParentDeathSignal(os.constants.signals.SIGTERM) ?? parent
  } catch { /* no prctl here: the channel and the pid still tell */ }
  if (parent !== supervisorPid) setImmediate(once)
}
