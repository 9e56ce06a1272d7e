// TLS session ticket keys: what they are, how they rotate, how a key file
// reads. Shared by the supervisor (which makes them and hands them to every
// worker, lib/ticket-keeper.ts) and the plugin (which reads a key file,
// index.ts); lib/tls-keys.ts sets them on a server.
//
// A key is 48 bytes, Node's `ticketKeys` layout: 16 bytes of name (sent in
// the clear with each ticket, to find its key), 16 of HMAC-SHA256 key and 16
// of AES-128-CBC key (src/crypto/crypto_context.cc, TicketKeyCallback).
import crypto from 'node:crypto'
import fs from 'node:fs'
import { FST_REUSEPORT_TLS_TICKET_KEYS } from './errors'

export const KEY_BYTES = 48

/**
 * The keys a server holds: one, or previous, current and next (as nginx's
 * ssl_session_ticket_key list and HAProxy's tls-ticket-keys). Tickets are
 * issued with the current key and accepted with any: one issued just before
 * a rotation (now previous) still resumes, and one issued by a process that
 * rotated a moment sooner (its current is our next) too.
 */
export type KeyRing = Buffer[]

/** The key new tickets are issued with. */
export function currentKey (ring: KeyRing): Buffer {
  return ring[ring.length === 3 ? 1 : 0] as Buffer
}

export function newKey (random: (n: number) => Buffer = crypto.randomBytes): Buffer {
  return random(KEY_BYTES)
}

/** At start: three fresh keys. */
export function firstRing (random?: (n: number) => Buffer): KeyRing {
  return [newKey(random), newKey(random), newKey(random)]
}

/** One rotation: current becomes previous, next becomes current, a fresh key is next. */
export function rotate (ring: KeyRing, random?: (n: number) => Buffer): KeyRing {
  return ring.length === 3 ? [ring[1] as Buffer, ring[2] as Buffer, newKey(random)] : firstRing(random)
}

/** How keys cross the private control channel (JSON): base64. Never logged. */
export function encodeRing (ring: KeyRing): string[] {
  return ring.map(k => k.toString('base64'))
}

export function decodeRing (keys: unknown): KeyRing | null {
  if (!Array.isArray(keys) || (keys.length !== 1 && keys.length !== 3)) return null
  const ring = keys.map(k => typeof k === 'string' ? Buffer.from(k, 'base64') : Buffer.alloc(0))
  return ring.every(k => k.length === KEY_BYTES) ? ring : null
}

/**
 * A key file: 48 bytes (one key: `openssl rand 48 > f`) or 144 bytes
 * (previous, current and next). The rotation rule for 144-byte files: drop
 * the first 48 bytes, append 48 fresh ones, then SIGHUP every process; as
 * each accepts all three, processes that re-read it at different moments
 * still resume each other's tickets.
 */
export function parseKeyFile (data: Buffer): KeyRing | string {
  if (data.length !== KEY_BYTES && data.length !== 3 * KEY_BYTES) {
    return `it holds ${data.length} bytes; it must hold ${KEY_BYTES} (one key) or ${3 * KEY_BYTES} (previous, current and next keys), e.g. from "openssl rand ${3 * KEY_BYTES}"`
  }
  const ring: KeyRing = []
  for (let i = 0; i < data.length; i += KEY_BYTES) ring.push(Buffer.from(data.subarray(i, i + KEY_BYTES)))
  return ring
}

/** Reads a key file, or throws FST_REUSEPORT_TLS_TICKET_KEYS naming it and what is wrong. */
export function readKeyFile (file: string): KeyRing {
  let data: Buffer
  try {
    data = fs.readFileSync(file)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO'
    const why = code === 'ENOENT' ? 'it does not exist' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' || code === 'EPERM' ? 'it is not readable' : 'it cannot be read'
    throw new FST_REUSEPORT_TLS_TICKET_KEYS(file, `${why} (${code})`)
  }
  const ring = parseKeyFile(data)
  if (typeof ring === 'string') throw new FST_REUSEPORT_TLS_TICKET_KEYS(file, ring)
  return ring
}
