// An HTTP/2 load client (node:http2), for bench/chaos.mjs: `sessions` lanes,
// each keeping `streams` requests in flight on one session, and opening a new
// session only once the server sent GOAWAY or the session ended, as browsers
// and undici do. A refused stream is retried once on a new session
// (RFC 9113, 8.7: the server did not process it). Prints one JSON line.
//
//   node bench/h2load.mjs --url http://127.0.0.1:3000/ --seconds 10 [--sessions 8] [--streams 4]
import http2 from 'node:http2'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    seconds: { type: 'string', default: '10' },
    sessions: { type: 'string', default: '8' },
    streams: { type: 'string', default: '4' }
  }
})
const url = new URL(values.url)
const deadline = Date.now() + Number(values.seconds) * 1000
const result = { requests: 0, ok: 0, non2xx: 0, retried: 0, sessionsOpened: 0, goaways: 0, errors: {} }
const count = code => { result.errors[code] = (result.errors[code] ?? 0) + 1 }

function lane () {
  let session = null
  const current = () => {
    if (session === null || session.closed || session.destroyed) {
      session = http2.connect(url.origin)
      result.sessionsOpened++
      session.on('goaway', () => { result.goaways++ })
      session.on('error', () => {})
    }
    return session
  }
  const once = () => new Promise(resolve => {
    let stream
    try {
      stream = current().request({ ':path': url.pathname })
    } catch (err) {
      return resolve({ error: err.code ?? err.message })
    }
    let status = 0
    stream.on('response', h => { status = h[':status'] })
    stream.resume()
    stream.on('end', () => resolve({ status }))
    stream.on('error', err => resolve({ error: err.code ?? err.message, refused: stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM }))
  })
  return async () => {
    while (Date.now() < deadline) {
      result.requests++
      let r = await once()
      if (r.refused) {
        result.retried++
        r = await once()
      }
      if (r.error) count(r.error)
      else if (r.status >= 200 && r.status < 300) result.ok++
      else result.non2xx++
    }
  }
}

const lanes = []
for (let s = 0; s < Number(values.sessions); s++) {
  const run = lane()
  for (let i = 0; i < Number(values.streams); i++) lanes.push(run())
}
await Promise.all(lanes)
result.failed = result.requests - result.ok
process.stdout.write(JSON.stringify(result) + '\n')
process.exit(0)
