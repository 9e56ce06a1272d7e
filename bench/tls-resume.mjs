// How many returning TLS clients resume their session, with 1, 2 and 4
// workers, and after a SIGHUP: the before/after table of docs/tls.md. Real
// clients (test/tls-clients.js): openssl s_client -reconnect (TLS 1.2, 20 runs
// of 5 reconnections), -sess_out then -sess_in (TLS 1.3, 20 sessions), and
// Node's tls client chaining 20 sessions. --cli runs another build (the
// "before" column: a checkout without this feature).
//
//   flock /tmp/fr-load.lock node bench/tls-resume.mjs [--cli path/to/dist/lib/cli.js]
import { createRequire } from 'node:module'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { ROOT } from './lib.mjs'

const require = createRequire(import.meta.url)
const { startCli, freePort, waitFor } = require('../test/helpers')
const c = require('../test/tls-clients')
const { values } = parseArgs({ options: { cli: { type: 'string' } } })

const cert = c.makeCert()
const env = { TLS_KEY: cert.key, TLS_CERT: cert.cert }
const app = path.join(ROOT, 'test', 'fixtures', 'tls-app.js')
// startCli runs `node dist/lib/cli.js start ...`: --cli drops that path ($1) for another.
const wrap = values.cli ? ['sh', '-c', `shift; exec ${JSON.stringify(process.execPath)} ${JSON.stringify(path.resolve(values.cli))} "$@"`] : []
for (const workers of [1, 2, 4]) {
  const port = await freePort()
  const args = ['-w', String(workers), '-o', '-a', '127.0.0.1', '-p', String(port), app]
  const sup = await startCli(args, { env, wrap })
  const v12 = await c.reconnectTls12(port, 20)
  const v13 = await c.sessionsTls13(port, 20)
  const node = await c.nodeResume(port, { runs: 20 })
  const file = path.join(cert.dir, `hup-${workers}`)
  await c.saveSessionTls13(port, file)
  const { session } = await c.nodeConnect(port, { waitMs: 100 })
  sup.child.kill('SIGHUP')
  await waitFor(() => sup.lines.some(l => /^reload: all/.test(l.msg ?? '')), { timeout: 20000, what: 'the reload' })
  const hupOpenssl = await c.resumeTls13(port, file)
  const hupNode = (await c.nodeConnect(port, { session })).reused
  console.log(`-w ${workers}: TLS 1.2 reconnections ${v12.resumed}/${v12.total}, TLS 1.3 sessions ${v13.resumed}/${v13.total}, Node client ${node.resumed}/${node.total}; after a SIGHUP: openssl ${hupOpenssl ? 'resumed' : 'full'}, Node ${hupNode ? 'resumed' : 'full'}`)
  await sup.stop('SIGTERM')
}
require('node:fs').rmSync(cert.dir, { recursive: true, force: true })
