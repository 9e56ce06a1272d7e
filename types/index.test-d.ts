// Type tests, checked by `tsc -p types` in npm test: every @ts-expect-error
// line must fail to compile, every other line must compile.
import Fastify, { type FastifyInstance } from 'fastify'
import reuseport, { fastifyReuseport, start, steerProgram, type FastifyReuseportOptions, type SlotInfo, type SupervisorHandle } from '..'

const app = Fastify()

app.register(reuseport)
app.register(reuseport, { backlog: 1024, ipv6Only: true })
app.register(fastifyReuseport, {})
const options: FastifyReuseportOptions = { backlog: 0 }
app.register(reuseport, options)

// @ts-expect-error backlog is a number
app.register(reuseport, { backlog: '1024' })
// @ts-expect-error ipv6Only is a boolean
app.register(reuseport, { ipv6Only: 1 })
// @ts-expect-error no such option
app.register(reuseport, { reusePort: true })
app.register(reuseport, { tlsTicketKeys: '/run/secrets/tls-ticket-keys' })
// @ts-expect-error tlsTicketKeys is a path
app.register(reuseport, { tlsTicketKeys: Buffer.alloc(48) })

// The fd listen option is augmented onto FastifyListenOptions.
app.listen({ fd: 3 })
app.listen({ port: 3000, host: '127.0.0.1', backlog: 511 })
// @ts-expect-error fd is a number
app.listen({ fd: '3' })

async function supervise (): Promise<void> {
  const handle: SupervisorHandle = await start({ app: './app.js', workers: 2, port: 3000, host: '127.0.0.1', closeGraceDelay: 5000 })
  await start({ app: './app.js', tlsTicketRotation: 0, tlsTicketKeys: './keys' })
  const slots: SlotInfo[] = handle.slots()
  const resumed: number = slots[0]?.tlsResumed ?? 0
  void resumed
  const pid: number | null = slots[0]?.pid ?? null
  const pids: number[] = handle.pids()
  await handle.reload()
  await handle.upgrade()
  await handle.close({ drainDelay: 1000 })
  void pid
  void pids
  handle.on('slot', (info: SlotInfo) => { void info.state })
  handle.on('exit', ({ slot, signal }) => { void slot; void signal })
  handle.once('scale', (n: number) => { void n })
  // @ts-expect-error a slot event carries a SlotInfo, not a string
  handle.on('slot', (info: string) => { void info })
  // @ts-expect-error app is required
  await start({ workers: 2 })
  // @ts-expect-error workers is a number or 'auto'
  await start({ app: './app.js', workers: 'all' })
}
void supervise

const program: Uint32Array = steerProgram([1, 0, 1])
void program

const drained = Fastify()
drained.onDrain?.(async (instance) => { instance.log.info('draining') })
// @ts-expect-error onDrain takes a function
drained.onDrain?.('x')
// @ts-expect-error onDrain is undefined where the plugin is not registered: call it with ?.
drained.onDrain(async () => {})
const chained: FastifyInstance | undefined = drained.onDrain?.(async () => {})
void chained

async function heal (handle: SupervisorHandle): Promise<void> {
  handle.on('replace', ({ slot, reason, detail }) => { const r: 'hung' | 'memory' | 'requests' = reason; void slot; void r; void detail })
  handle.on('fatal', (err: Error) => { void err })
  await start({ app: './app.js', maxMemory: '512M', maxRequests: 1000, maxRequestsJitter: 50, workerTimeout: 30000, balancer: 'cluster', balance: false })
  // @ts-expect-error balancer is reuseport or cluster
  await start({ app: './app.js', balancer: 'nginx' })
}
void heal
