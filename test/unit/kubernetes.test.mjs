// examples/kubernetes/deployment.yaml: valid against the Kubernetes schema
// (kubernetes-models: ajv with the API's OpenAPI schemas), applies on a
// default cluster (no unsafe sysctl unless opted in; the opt-in block is valid
// too), its probes hit a route examples/app.js serves, its settings parse, and
// terminationGracePeriodSeconds covers drain delay + grace.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { Deployment } from 'kubernetes-models/apps/v1'
import YAML from 'yaml'

const require = createRequire(import.meta.url)
const { ROOT, freePort, startCli } = require('../helpers.js')
const { parseCli } = require('../../dist/lib/supervisor/flags.js')

const FILE = path.join(ROOT, 'examples', 'kubernetes', 'deployment.yaml')
const text = fs.readFileSync(FILE, 'utf8')
const manifest = YAML.parse(text)
const pod = manifest.spec.template.spec
const [container] = pod.containers
const env = Object.fromEntries(container.env.map(e => [e.name, e.value]))

t.test('valid against the Kubernetes schema (apps/v1 Deployment)', async t => {
  t.doesNotThrow(() => new Deployment(manifest).validate())
  // The validator can fail: a string where the schema wants an integer.
  t.throws(() => new Deployment({ ...manifest, spec: { ...manifest.spec, replicas: '3' } }).validate(), /replicas must be integer/)
})

t.test('applies on a default cluster: no unsafe sysctl unless opted in', async t => {
  t.equal(pod.securityContext?.sysctls, undefined, 'no pod sysctls (a default kubelet rejects net.ipv4.tcp_migrate_req: SysctlForbidden)')
  // The commented opt-in block, uncommented, is valid too.
  const lines = text.split('\n')
  const start = lines.findIndex(l => /^\s*# securityContext:$/.test(l))
  t.ok(start > 0, 'the opt-in block is there, commented out')
  const optedIn = lines.map((l, i) => i >= start && i < start + 3 ? l.replace('# ', '') : l).join('\n')
  const opted = YAML.parse(optedIn)
  t.same(opted.spec.template.spec.securityContext.sysctls, [{ name: 'net.ipv4.tcp_migrate_req', value: '1' }], 'uncommented, it sets the sysctl')
  t.doesNotThrow(() => new Deployment(opted).validate(), 'and is valid')
})

t.test('terminationGracePeriodSeconds covers drain delay + close grace', async t => {
  const needed = (Number(env.FASTIFY_DRAIN_DELAY) + Number(env.FASTIFY_CLOSE_GRACE_DELAY)) / 1000
  t.ok(pod.terminationGracePeriodSeconds >= needed + 5, `${pod.terminationGracePeriodSeconds} s >= ${needed} s + 5 s of room`)
})

t.test('its settings are what the CLI accepts', async t => {
  const config = parseCli(['start', ...container.args], { ...env, KUBERNETES_SERVICE_HOST: '10.0.0.1' })
  t.equal(config.start.port, container.ports[0].containerPort, 'FASTIFY_PORT is the containerPort')
  t.equal(config.start.host, '0.0.0.0', 'it listens on every address in a pod')
  t.equal(config.drainDelay, 10000)
  t.equal(config.start.closeGraceDelay, 20000)
})

t.test('the probes hit a route examples/app.js serves', async t => {
  const probes = [container.readinessProbe, container.livenessProbe]
  for (const p of probes) t.equal(p.httpGet.port, container.ports[0].name, 'the probe port is the container port')
  const port = await freePort()
  const sup = await startCli(['-w', '1', '-a', '127.0.0.1', '-p', String(port), path.join(ROOT, 'examples', container.args[0])])
  t.teardown(() => sup.stop('SIGKILL'))
  for (const p of probes) {
    const res = await fetch(`http://127.0.0.1:${port}${p.httpGet.path}`)
    t.equal(res.status, 200, `GET ${p.httpGet.path}: 200`)
    await res.text()
  }
  t.same(await sup.stop('SIGTERM'), { code: 0, signal: null })
})
