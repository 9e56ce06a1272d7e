// The supervisor's TLS session ticket keys: made here (or read from a key
// file), handed to every worker over its private control channel right after
// spawn, rotated on every worker at once. They live in the supervisor's
// memory only, so reloads, crashes, replacements and scale changes keep them.
// Never logged, never in the environment, argv, a file or /metrics.
import type { Logger } from 'pino'
import type { SupervisorMessage } from '../common/messages'
import { decodeRing, encodeRing, firstRing, readKeyFile, rotate, type KeyRing } from '../common/ticket-keys'

export interface KeeperOptions {
  /** Rotate every this many ms; 0: never. Ignored with a key file (its owner rotates it). */
  rotationMs: number
  /** A key file instead of keys of our own, re-read on reload (SIGHUP). */
  file: string | undefined
  log: Logger
  /** Sends a message to every worker process (starting, serving, draining). */
  broadcast: (message: SupervisorMessage) => void
}

export class TicketKeeper {
  private ring: KeyRing
  private timer: NodeJS.Timeout | null = null
  /** The modes workers reported (lib/tls-keys.ts): none for an app without TLS. */
  private readonly modes = new Set<string>()

  /** Throws FST_REUSEPORT_TLS_TICKET_KEYS for a key file that cannot be used: nothing starts. */
  constructor (private readonly options: KeeperOptions) {
    this.ring = options.file === undefined ? firstRing() : readKeyFile(options.file)
  }

  /** The keys, for the state an in-place upgrade carries (a memfd: never env, argv or a file). */
  carry (): string[] {
    return encodeRing(this.ring)
  }

  /** After an in-place upgrade: the keys the old program held, so that no session is lost. A key file wins. */
  adopt (keys: unknown): void {
    const ring = decodeRing(keys)
    if (ring !== null && this.options.file === undefined) this.ring = ring
  }

  /** What a new worker is sent first. */
  message (): SupervisorMessage {
    return { type: 'tls-keys', keys: encodeRing(this.ring) }
  }

  start (): void {
    const { rotationMs, file } = this.options
    if (file !== undefined || rotationMs <= 0) return
    this.timer = setInterval(() => {
      this.ring = rotate(this.ring)
      this.options.broadcast(this.message())
    }, rotationMs)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  /** On reload: a key file is read again; a bad one is logged and the keys in use stay. */
  reload (): void {
    const { file, log } = this.options
    if (file === undefined) return
    try {
      this.ring = readKeyFile(file)
    } catch (err) {
      log.error({ err }, `reload: ${(err as Error).message}; keeping the TLS ticket keys in use`)
      return
    }
    log.info(`reload: TLS ticket keys read again from ${file} (${this.ring.length === 3 ? 'previous, current and next' : 'one key'})`)
    this.options.broadcast(this.message())
  }

  /** A worker's 'tls' message: its TLS server holds the keys, in this mode. */
  observe (message: { type: string, mode?: string }): void {
    if (message.type === 'tls' && message.mode !== undefined) this.modes.add(message.mode)
  }

  /** The start line on TLS sessions: which mode runs. Nothing for an app without TLS. */
  logStarted (): void {
    const line = this.describe()
    if (line !== null) this.options.log.info({ tlsTickets: this.mode() }, line)
  }

  /** The mode the workers run in, for the start line's fields: 'single' if any does. */
  mode (): string | null {
    return this.modes.size === 0 ? null : this.modes.has('single') ? 'single' : 'rotating'
  }

  /** The start line's words on TLS sessions, or null when no worker serves TLS. */
  describe (): string | null {
    if (this.modes.size === 0) return null
    const { rotationMs, file } = this.options
    const single = this.modes.has('single')
    const mode = single
      ? 'one key at a time (this Node lacks the internal ticket key callback): a session from before a rotation takes a full handshake'
      : 'previous, current and next keys (Node\'s internal ticket key callback)'
    const source = file !== undefined
      ? `keys from ${file}, read again on SIGHUP`
      : rotationMs > 0 ? `keys made here, rotated every ${rotationMs} ms` : 'keys made here, never rotated'
    return `TLS session resumption shared by every worker: ${source}; ${mode}`
  }
}
