// The first thing the CLI runs after an in-place upgrade's execve. execve
// resets every handled signal to its default (signal(7)), and Node then
// resets the mask too (PlatformInit sets it to {SIGUSR1}, src/node.cc), so
// nothing can be held across the exec itself: a SIGTERM in the ~50 ms of
// Node's own boot meets Node's default handler. From the first line of our
// code on, though, the signals the CLI handles are caught here, remembered,
// and replayed once its real handlers are installed (replay()), so that a
// SIGTERM during the restore still ends in a graceful shutdown. SIGUSR2,
// whose default action would end the supervisor, is held from the first
// line of every start: an upgrade asked while the slots start runs once
// they serve.
import { STATE_ENV } from './upgrade-state'

const CAUGHT = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR2', 'SIGTTIN', 'SIGTTOU'] as const
const held: NodeJS.Signals[] = []
const hold = (signal: NodeJS.Signals): void => { held.push(signal) }

/** Only when this program is the new half of an upgrade; SIGUSR2 always (its default action kills). */
export const restoring = process.env[STATE_ENV] !== undefined
const caught = restoring ? CAUGHT : ['SIGUSR2' as const]
for (const s of caught) process.on(s, hold)

/** The CLI's handlers are in place: the signals caught meanwhile are sent again, in order. */
export function replay (): void {
  for (const s of caught) process.off(s, hold)
  for (const s of held.splice(0)) process.kill(process.pid, s)
}
