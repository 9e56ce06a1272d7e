'use strict'

// Real TLS clients for the session resumption tests and bench/tls-resume.mjs:
// openssl s_client (-reconnect for TLS 1.2, -sess_out then -sess_in for TLS
// 1.3) and Node's tls client reusing its session. Each returns how many of
// its attempts resumed.
const { execFileSync, spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const tls = require('node:tls')

/** A self-signed key and certificate for 127.0.0.1 in a new temporary directory: { dir, key, cert }. */
function makeCert () {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fr-tls-'))
  const key = path.join(dir, 'key.pem')
  const cert = path.join(dir, 'cert.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' })
  return { dir, key, cert }
}

/**
 * Runs openssl with stdin fed by `input`: '' closes it at once; { minMs,
 * file, maxMs } keeps it open minMs, then until `file` is written (at most
 * maxMs). Its output cannot tell: stdout on a pipe is buffered until exit.
 */
function openssl (args, { input = '', timeout = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', d => { out += d })
    child.stderr.on('data', d => { out += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout)
    child.once('error', reject)
    child.once('exit', () => { clearTimeout(timer); resolve(out) })
    if (typeof input === 'string') return child.stdin.end(input)
    const started = Date.now()
    const poll = setInterval(() => {
      const waited = Date.now() - started
      if (waited >= input.maxMs || (waited >= input.minMs && fs.existsSync(input.file) && fs.statSync(input.file).size > 0)) {
        clearInterval(poll)
        child.stdin.end()
      }
    }, 20)
    child.once('exit', () => clearInterval(poll))
  })
}

/**
 * TLS 1.2: `openssl s_client -reconnect` connects once, then reconnects 5
 * times with the session of its first connection. Returns the reconnections
 * that resumed ("Reused, TLSv1.2") out of runs * 5.
 */
async function reconnectTls12 (port, runs = 20) {
  let resumed = 0
  let total = 0
  for (let i = 0; i < runs; i++) {
    const out = await openssl(['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_2', '-reconnect'])
    const lines = out.split('\n').filter(l => /^(New|Reused), TLSv/.test(l))
    // The first line is the first connection: always new.
    total += lines.length - 1
    resumed += lines.slice(1).filter(l => l.startsWith('Reused')).length
  }
  return { resumed, total }
}

/**
 * TLS 1.3: the ticket comes after the handshake, so the first client stays
 * connected 1 s (`sleep 1 | openssl s_client -sess_out f`), and longer until
 * the ticket arrived on a loaded machine, before the second offers it
 * (`-sess_in f`).
 */
async function saveSessionTls13 (port, file) {
  fs.rmSync(file, { force: true })
  await openssl(['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_3', '-sess_out', file],
    { input: { minMs: 1000, file, maxMs: 5000 } })
  return fs.existsSync(file) && fs.statSync(file).size > 0
}

async function resumeTls13 (port, file) {
  const out = await openssl(['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_3', '-sess_in', file])
  return /^Reused, TLSv1\.3/m.test(out)
}

/** runs sessions saved, then offered, `parallel` at a time: how many resumed. */
async function sessionsTls13 (port, runs = 20, parallel = 10) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fr-sess-'))
  let resumed = 0
  try {
    for (let i = 0; i < runs; i += parallel) {
      const batch = Array.from({ length: Math.min(parallel, runs - i) }, (_, j) => path.join(dir, `s${i + j}`))
      await Promise.all(batch.map(f => saveSessionTls13(port, f)))
      const r = await Promise.all(batch.map(f => resumeTls13(port, f)))
      resumed += r.filter(Boolean).length
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
  return { resumed, total: runs }
}

/**
 * One Node tls connection offering `session`: { reused, session, name }, the
 * newest session it received and the name of its ticket's key (a ticket's
 * first 16 bytes, RFC 5077 section 4): it changes when the server rotates.
 */
function nodeConnect (port, { session, maxVersion = 'TLSv1.3', waitMs = 50 } = {}) {
  return new Promise((resolve, reject) => {
    let latest = null
    let name = null
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, session, maxVersion, minVersion: maxVersion })
    socket.on('session', s => {
      latest = s
      name = socket.getTLSTicket()?.subarray(0, 16).toString('hex') ?? null
    })
    socket.once('error', reject)
    socket.once('secureConnect', () => {
      const reused = socket.isSessionReused()
      // TLS 1.3 tickets arrive after the handshake.
      setTimeout(() => { socket.end(); resolve({ reused, session: latest, name }) }, waitMs)
    })
  })
}

/** Node's tls client: one full handshake, then `runs` new connections each offering a session of the one before. */
async function nodeResume (port, { runs = 20, maxVersion = 'TLSv1.3' } = {}) {
  let { session } = await nodeConnect(port, { maxVersion })
  let resumed = 0
  for (let i = 0; i < runs; i++) {
    const r = await nodeConnect(port, { session, maxVersion })
    if (r.reused) resumed++
    session = r.session ?? session
  }
  return { resumed, total: runs }
}

/** Resolves once new tickets carry another key name than `name`: the server rotated. */
async function rotated (port, name, { timeout = 10000 } = {}) {
  const deadline = Date.now() + timeout
  for (;;) {
    const r = await nodeConnect(port, { waitMs: 100 })
    if (r.name !== null && r.name !== name) return r.name
    if (Date.now() > deadline) throw new Error(`no rotation within ${timeout} ms`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

/** The key name of the ticket in an openssl session file (`openssl sess_id -text`: the dump's first 16 bytes). */
function opensslTicketName (file) {
  const text = execFileSync('openssl', ['sess_id', '-in', file, '-noout', '-text'], { encoding: 'utf8' })
  const dump = /TLS session ticket:\n\s*0000 - ([0-9a-f -]{47})/.exec(text)?.[1]
  return dump === undefined ? null : dump.replace(/[ -]/g, '')
}

module.exports = { makeCert, openssl, reconnectTls12, saveSessionTls13, resumeTls13, sessionsTls13, nodeConnect, nodeResume, opensslTicketName, rotated }
