// Sets shared TLS session ticket keys on the server Fastify made (https, or
// http2 with TLS), so that a session from one process resumes on any other
// holding the same keys: every worker of a supervisor, before and after a
// reload, or processes sharing a key file. The user's TLS options are left
// as they are.
//
// Node's public API holds one key (server.setTicketKeys, 48 bytes): a ticket
// issued just before a rotation would then cost a full handshake. Node also
// has an internal hook, SecureContext.enableTicketKeyCallback() with an
// `onticketkeycallback` method on the native context, which OpenSSL calls for
// each ticket it issues or receives (src/crypto/crypto_context.cc,
// TicketKeyCallback; Node keeps it for test-https-resume-after-renew.js).
// Where it exists with the layout we know, we keep previous, current and next
// keys ('rotating'); otherwise one key ('single'). Node 20, 22, 24 and 26 have it.
import crypto from 'node:crypto'
import tls from 'node:tls'
import { currentKey, decodeRing, type KeyRing } from '../common/ticket-keys'

export type TicketMode = 'rotating' | 'single'

/** The native SecureContext behind server._sharedCreds.context: only what we use, all optional. */
interface NativeContext {
  enableTicketKeyCallback?: () => void
  onticketkeycallback?: (name: Buffer, iv: Buffer, enc: boolean) => unknown[]
  setSessionIdContext?: (id: string) => void
}

/** The return layout TicketKeyCallback reads: [result, hmac key, aes key, name, iv]. */
const LAYOUT = { kTicketKeyReturnIndex: 0, kTicketKeyHMACIndex: 1, kTicketKeyAESIndex: 2, kTicketKeyNameIndex: 3, kTicketKeyIVIndex: 4 }

/**
 * A fixed session ID context: OpenSSL refuses to resume a session (ticket or
 * not) made under another one, and Node's default is a hash of process.argv
 * (lib/_tls_wrap.js, setSecureContext), which differs between an app started
 * from two paths, or by two tools.
 */
export const SESSION_ID_CONTEXT = 'fastify-reuseport'

function nativeContext (server: tls.Server): NativeContext | null {
  const creds = (server as unknown as { _sharedCreds?: { context?: NativeContext } })._sharedCreds
  return creds?.context ?? null
}

/** Whether this context has the internal ticket key callback with the layout we know. */
export function hasTicketCallback (ctx: NativeContext | null): boolean {
  if (ctx === null || typeof ctx.enableTicketKeyCallback !== 'function') return false
  const ctor = (ctx as { constructor?: Record<string, unknown> }).constructor ?? {}
  return Object.entries(LAYOUT).every(([k, v]) => ctor[k] === v)
}

/** Which mode this Node runs in: checked once at start, on a context of its own. */
export function detectMode (): TicketMode {
  return hasTicketCallback(tls.createSecureContext().context as NativeContext) ? 'rotating' : 'single'
}

/** Node's default session ID context (lib/_tls_wrap.js): a server still on it was given none by its user. */
function defaultSessionIdContext (): string {
  return crypto.createHash('sha1').update(process.argv.join(' ')).digest('hex').slice(0, 32)
}

/**
 * What the ticket callback answers OpenSSL: to issue (enc), the current key,
 * its name and a fresh IV; to accept, the key whose name the ticket carries:
 * 1 for the current key, 2 (accept and issue a new ticket with the current
 * key) for another, 0 (unknown: full handshake) for none. OpenSSL's
 * SSL_CTX_set_tlsext_ticket_key_cb(3) defines these results.
 */
export function ticketAnswer (ring: KeyRing, name: Buffer, enc: boolean, iv: () => Buffer = () => crypto.randomBytes(16)): unknown[] {
  const current = currentKey(ring)
  const parts = (k: Buffer): [Buffer, Buffer] => [k.subarray(16, 32), k.subarray(32, 48)]
  if (enc) return [1, ...parts(current), current.subarray(0, 16), iv()]
  const key = ring.find(k => k.subarray(0, 16).equals(name))
  // TicketKeyCallback reads both keys even for 0: they must be buffers.
  if (key === undefined) return [0, ...parts(current)]
  return [key === current ? 1 : 2, ...parts(key)]
}

/** Shared keys for every TLS server of this process. */
export class SharedTickets {
  /** Each server, and whether its session ID context is ours to set (its user set none). */
  private readonly servers = new Map<tls.Server, boolean>()

  constructor (private ring: KeyRing, readonly mode: TicketMode = detectMode()) {}

  /** Sets the keys on server, and again after any setSecureContext() (which makes a new context). */
  attach (server: tls.Server): void {
    if (this.servers.has(server)) return this.apply(server)
    this.servers.set(server, (server as unknown as { sessionIdContext?: string }).sessionIdContext === defaultSessionIdContext())
    const setSecureContext = server.setSecureContext
    server.setSecureContext = (options: tls.SecureContextOptions) => {
      setSecureContext.call(server, options)
      this.apply(server)
    }
    this.apply(server)
  }

  /** New keys (a rotation, a key file read again): every server holds them at once. */
  update (ring: KeyRing): void {
    this.ring = ring
    for (const server of this.servers.keys()) this.apply(server)
  }

  private apply (server: tls.Server): void {
    const ctx = nativeContext(server)
    if (this.servers.get(server) === true) ctx?.setSessionIdContext?.(SESSION_ID_CONTEXT)
    if (this.mode === 'rotating' && ctx !== null && hasTicketCallback(ctx)) {
      // The callback reads this.ring on each ticket: an update needs nothing more.
      if (ctx.onticketkeycallback === undefined) {
        ctx.enableTicketKeyCallback?.()
        ctx.onticketkeycallback = (name, _iv, enc) => ticketAnswer(this.ring, name, enc)
      }
    } else {
      server.setTicketKeys(currentKey(this.ring))
    }
  }
}

export function isTlsServer (server: unknown): server is tls.Server {
  return server instanceof tls.Server
}

export interface Handshakes { resumed: number, full: number }

/** Counts the server's completed handshakes: resumed (a ticket or session ID was accepted) or full. */
export function countHandshakes (server: tls.Server): Handshakes {
  const counts = { resumed: 0, full: 0 }
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    if (socket.isSessionReused()) counts.resumed++
    else counts.full++
  })
  return counts
}

// Set by the worker runtime: every copy of this package loaded in the process sees it.
const kSupervisorKeys = Symbol.for('fastify-reuseport.supervisor-ticket-keys')

/** In a worker of fastify-reuseport start: its supervisor hands out the keys. */
export function supervisorHoldsKeys (): boolean {
  return (globalThis as Record<symbol, unknown>)[kSupervisorKeys] === true
}

/**
 * A worker's end: the keys come over the supervisor's private control channel
 * (never the environment, argv or a file), first right after spawn, then at
 * each rotation or key file re-read.
 */
export class WorkerTickets {
  private ring: KeyRing | null = null
  private shared: SharedTickets | null = null
  private readonly waiting: Array<() => void> = []
  private counts: Handshakes = { resumed: 0, full: 0 }

  constructor (channel: { on: (event: 'message', listener: (m: unknown) => void) => unknown }) {
    (globalThis as Record<symbol, unknown>)[kSupervisorKeys] = true
    channel.on('message', m => {
      const msg = m as { type?: unknown, keys?: unknown } | null
      if (msg?.type !== 'tls-keys') return
      const ring = decodeRing(msg.keys)
      if (ring === null) return
      this.ring = ring
      this.shared?.update(ring)
      for (const resolve of this.waiting.splice(0)) resolve()
    })
  }

  /**
   * Before the server listens: a TLS server waits for the keys, then holds
   * them. Resolves with the mode, or null for a server without TLS.
   */
  async serve (server: unknown): Promise<TicketMode | null> {
    if (!isTlsServer(server)) return null
    if (this.ring === null) await new Promise<void>(resolve => this.waiting.push(resolve))
    this.shared ??= new SharedTickets(this.ring as KeyRing)
    this.shared.attach(server)
    this.counts = countHandshakes(server)
    return this.shared.mode
  }

  /** Again after listen: under Node's cluster, listen() sets the key its primary kept (net.js, _setServerData). */
  reapply (server: unknown): void {
    if (isTlsServer(server)) this.shared?.attach(server)
  }

  handshakes (): Handshakes {
    return { ...this.counts }
  }
}
