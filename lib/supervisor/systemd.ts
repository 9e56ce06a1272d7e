// systemd, the other half of a supervisor's life: readiness and reload
// states (sd_notify(3), Type=notify), and the fd store (FDSTORE=1 with
// FDNAME=slot-N): each slot's listener is pushed there, so that when the
// supervisor is restarted, or killed by SIGKILL or the OOM killer, systemd
// hands the same sockets back (LISTEN_FDS, LISTEN_FDNAMES: sd_listen_fds(3))
// and the connections queued meanwhile wait in the kernel for the new
// supervisor instead of being reset. Socket activation uses the same names:
// one .socket unit per slot with FileDescriptorName=slot-N and ReusePort=yes.
import type { Logger } from 'pino'
import type { Listener } from '../common/listener'
import type { NativeBinding } from '../common/native'

/** sd_listen_fds(3): passed fds start here. */
const LISTEN_FDS_START = 3
const SLOT_NAME = /^slot-(\d+)$/

export const slotName = (index: number): string => `slot-${index}`

/** Inherited listeners by slot, from LISTEN_FDS and LISTEN_FDNAMES; what cannot be a slot is closed. */
export function inheritedSlots (binding: NativeBinding, env: NodeJS.ProcessEnv, pid: number, backlog: number, log: Logger): Map<number, Listener[]> {
  const slots = new Map<number, Listener[]>()
  const count = Number(env.LISTEN_FDS ?? 0)
  if (env.LISTEN_PID === undefined || Number(env.LISTEN_PID) !== pid || !Number.isInteger(count) || count <= 0) return slots
  const names = (env.LISTEN_FDNAMES ?? '').split(':')
  // Not for the workers, nor for anything they spawn (sd_listen_fds(unset_environment=1)).
  for (const name of ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES']) delete env[name]
  for (let i = 0; i < count; i++) {
    const fd = LISTEN_FDS_START + i
    const name = names[i] ?? ''
    const slot = SLOT_NAME.exec(name)
    try {
      binding.setCloexec(fd)
      const info = binding.socketInfo(fd)
      if (slot === null || !info.stream || !info.listening || !info.reusePort || info.family === 0) {
        log.warn({ fd, name, ...info }, `systemd: fd ${fd} (${name || 'no name'}) is not a slot: a listening TCP socket with SO_REUSEPORT named slot-N; closed`)
        binding.close(fd)
        continue
      }
      const index = Number(slot[1])
      slots.set(index, [...(slots.get(index) ?? []), { fd, address: info.address, family: info.family, port: info.port, backlog }])
    } catch (err) {
      log.warn({ fd, name, err }, `systemd: fd ${fd} (${name || 'no name'}) cannot be used: ${(err as Error).message}`)
    }
  }
  return slots
}

/** The slots a supervisor may adopt: 0..n-1 with no gap, since socket i of a reuseport group is slot i. */
export function adoptable (slots: Map<number, Listener[]>): number {
  let n = 0
  while (slots.has(n)) n++
  return n
}

/** sd_notify(3) to $NOTIFY_SOCKET, or nothing without one. */
export class Notifier {
  constructor (
    private readonly binding: NativeBinding | null,
    private readonly path: string | undefined,
    private readonly log: Logger
  ) {}

  get enabled (): boolean { return this.binding !== null && this.path !== undefined && this.path !== '' }

  send (message: string, fds: number[] = []): void {
    if (!this.enabled) return
    try {
      this.binding?.notify(this.path as string, message, fds)
    } catch (err) {
      this.log.warn({ err }, `systemd: could not notify ${message.split('\n')[0] as string}: ${(err as Error).message}`)
    }
  }

  /** Every slot serves: ready, with our pid (the same across an in-place upgrade). */
  ready (status: string): void { this.send(`READY=1\nMAINPID=${process.pid}\nSTATUS=${status}`) }

  /** systemd ≥ 253 (Type=notify-reload) wants the monotonic time of the reload's start. */
  reloading (): void { this.send(`RELOADING=1\nMONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`) }

  stopping (): void { this.send('STOPPING=1') }

  /** Pushes a slot's listeners into the fd store, under its name. */
  store (index: number, fds: number[]): void {
    if (fds.length > 0) this.send(`FDSTORE=1\nFDNAME=${slotName(index)}`, fds)
  }

  /** A retired slot's listeners leave the fd store. */
  forget (index: number): void { this.send(`FDSTOREREMOVE=1\nFDNAME=${slotName(index)}`) }
}
