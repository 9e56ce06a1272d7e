'use strict'

// Protocol clients for the drain tests: an HTTP/2 client that sends one
// request every intervalMs on one session, opening a new session only when
// the server sends GOAWAY, and retrying once a stream the server refused
// (REFUSED_STREAM: not processed, RFC 9113 8.7), as browsers and undici do,
// counting those; an HTTP/1.1 keep-alive
// client doing the same on one connection.
const http2 = require('node:http2')
const { Agent, request } = require('undici')
const { sleep } = require('./helpers')

/** Requests every intervalMs for durationMs on one HTTP/2 session at a time. */
async function h2Paced ({ origin, ca, durationMs, intervalMs = 50 }) {
  const sessions = []
  const samples = []
  const errors = {}
  let session = null
  let retried = 0
  const connect = () => {
    const s = http2.connect(origin, ca ? { ca, servername: 'localhost' } : {})
    const info = { openedAt: Date.now(), goawayAt: null, closedAt: null }
    s.on('goaway', () => { info.goawayAt ??= Date.now() })
    s.on('close', () => { info.closedAt = Date.now() })
    s.on('error', err => { errors[`session ${err.code ?? err.message}`] = (errors[`session ${err.code ?? err.message}`] ?? 0) + 1 })
    sessions.push(info)
    return s
  }
  const one = s => new Promise(resolve => {
    const start = Date.now()
    let body = ''
    let stream
    try {
      stream = s.request({ ':path': '/' })
    } catch (err) {
      return resolve({ start, error: err.code ?? err.message })
    }
    stream.setEncoding('utf8')
    stream.on('data', d => { body += d })
    stream.on('end', () => {
      try {
        resolve({ start, ms: Date.now() - start, pid: JSON.parse(body).pid })
      } catch {
        resolve({ start, error: `bad body ${body}` })
      }
    })
    stream.on('error', err => resolve({ start, error: err.code ?? err.message, refused: stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM }))
  })
  const withRetry = async () => {
    const r = await one(current())
    if (!r.refused) return r
    retried++
    return one(current())
  }
  const current = () => {
    if (session === null || session.closed || session.destroyed) session = connect()
    return session
  }
  const pending = []
  const deadline = Date.now() + durationMs
  while (Date.now() < deadline) {
    pending.push(withRetry())
    await sleep(intervalMs)
  }
  for (const r of await Promise.all(pending)) {
    if (r.error) errors[r.error] = (errors[r.error] ?? 0) + 1
    else samples.push(r)
  }
  session?.close()
  return { requests: pending.length, ok: samples.length, errors, samples, sessions, retried }
}

/** Requests every intervalMs for durationMs over one HTTP/1.1 keep-alive connection (undici). */
async function h1Paced ({ origin, ca, durationMs, intervalMs = 50 }) {
  const agent = new Agent({ connections: 1, keepAliveTimeout: 60000, connect: ca ? { ca, servername: 'localhost' } : {} })
  const samples = []
  const errors = {}
  const sockets = new Set()
  let requests = 0
  const deadline = Date.now() + durationMs
  while (Date.now() < deadline) {
    requests++
    const start = Date.now()
    try {
      const res = await request(origin + '/', { dispatcher: agent })
      const body = JSON.parse(await res.body.text())
      samples.push({ start, ms: Date.now() - start, pid: body.pid, httpVersion: body.httpVersion })
      sockets.add(res.headers.connection ?? 'keep-alive')
    } catch (err) {
      errors[err.code ?? err.message] = (errors[err.code ?? err.message] ?? 0) + 1
    }
    await sleep(intervalMs)
  }
  await agent.close()
  return { requests, ok: samples.length, errors, samples }
}

module.exports = { h2Paced, h1Paced }
