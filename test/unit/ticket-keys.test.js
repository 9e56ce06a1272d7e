'use strict'

// The pure parts: rotation of previous, current and next keys, the key file
// format, and what the ticket callback answers OpenSSL.
const t = require('tap')
const { currentKey, decodeRing, encodeRing, firstRing, parseKeyFile, rotate } = require('../../dist/lib/common/ticket-keys')
const { ticketAnswer } = require('../../dist/lib/plugin/tls-keys')

const key = n => Buffer.alloc(48, n)
const name = k => k.subarray(0, 16)

t.test('rotation: current becomes previous, next becomes current, a fresh next', async t => {
  const ring = firstRing()
  t.equal(ring.length, 3)
  t.equal(new Set(ring.map(k => k.toString('hex'))).size, 3, 'three different random keys')
  const next = rotate([key(1), key(2), key(3)], () => key(4))
  t.same(next, [key(2), key(3), key(4)])
  t.same(currentKey(next), key(3))
  t.same(currentKey([key(9)]), key(9), 'one key: it is current')
})

t.test('the control channel encoding round-trips, and refuses anything else', async t => {
  const ring = [key(1), key(2), key(3)]
  t.same(decodeRing(encodeRing(ring)), ring)
  t.same(decodeRing(encodeRing([key(5)])), [key(5)])
  t.equal(decodeRing([key(1).toString('base64'), 'abc']), null)
  t.equal(decodeRing([]), null)
  t.equal(decodeRing('x'), null)
})

t.test('key files: 48 bytes (one key) or 144 (previous, current, next)', async t => {
  t.same(parseKeyFile(Buffer.concat([key(1)])), [key(1)])
  t.same(parseKeyFile(Buffer.concat([key(1), key(2), key(3)])), [key(1), key(2), key(3)])
  for (const n of [0, 47, 49, 80, 96, 192]) t.match(parseKeyFile(Buffer.alloc(n)), `it holds ${n} bytes; it must hold 48 (one key) or 144`)
})

t.test('ticket callback: issue with current, accept any of the three, renew the others, refuse the unknown', async t => {
  const ring = [key(1), key(2), key(3)]
  const iv = Buffer.alloc(16, 7)
  const enc = ticketAnswer(ring, Buffer.alloc(16), true, () => iv)
  t.same(enc, [1, key(2).subarray(16, 32), key(2).subarray(32, 48), name(key(2)), iv], 'issued with the current key, its name and a fresh IV')
  t.same(ticketAnswer(ring, name(key(2)), false), [1, key(2).subarray(16, 32), key(2).subarray(32, 48)], 'current: accepted')
  t.same(ticketAnswer(ring, name(key(1)), false), [2, key(1).subarray(16, 32), key(1).subarray(32, 48)], 'previous: accepted, and a new ticket issued')
  t.same(ticketAnswer(ring, name(key(3)), false), [2, key(3).subarray(16, 32), key(3).subarray(32, 48)], 'next: accepted, and a new ticket issued')
  const unknown = ticketAnswer(ring, Buffer.alloc(16, 0xee), false)
  t.equal(unknown[0], 0, 'unknown: a full handshake')
  t.ok(Buffer.isBuffer(unknown[1]) && Buffer.isBuffer(unknown[2]) && unknown[2].length === 16, 'with buffers still (Node reads them)')
})
