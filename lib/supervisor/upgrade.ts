// SIGUSR2 (handle.upgrade()): the supervisor replaces its own program in
// place, same pid, without closing a socket. Node does not help: it has no
// execve before 23.11, its fds are all close-on-exec, and libuv reaps only
// the children it spawned. So: a preflight child of the new code first (any
// failure leaves this program serving), then every fd that must survive has
// FD_CLOEXEC cleared, the state goes into a memfd, and the addon's execve
// runs the CLI script again (the new one, after `npm update`). The new
// program adopts the sockets and workers (lib/supervisor/adopt.ts), then
// rolls the workers one slot at a time as SIGHUP does. See docs/upgrade.md.
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import type http from 'node:http'
import path from 'node:path'
import { FST_REUSEPORT_UPGRADE_FAILED } from '../common/errors'
import { PROTOCOL } from '../common/messages'
import { loadNative, type NativeBinding } from '../common/native'
import { adoptedFds } from './adopt'
import type { Context } from './context'
import type { Operations } from './operations'
import type { Worker } from './slot'
import { carriedFds, packageVersion, STATE_ENV, STATE_VERSION, writeState, type CarriedState, type CarriedWorker } from './upgrade-state'

const PREFLIGHT_MS = 15000
const STEADY_POLL_MS = 20

/** How Node keeps a stream's fd: libuv's handle (not part of Node's typings). */
interface WithHandle { _handle?: { fd?: unknown } | null }

/** The fd behind a net.Socket, a pipe or a server, or -1. */
export function fdOf (stream: unknown): number {
  const fd = (stream as WithHandle | null | undefined)?._handle?.fd
  return typeof fd === 'number' && fd >= 0 ? fd : -1
}

/** Resolves once nothing is queued on stdout and stderr (both may be non-blocking pipes): what is queued is lost at execve. */
async function stdioFlushed (): Promise<void> {
  for (const stream of [process.stdout, process.stderr]) {
    while (stream.writableLength > 0) await new Promise(resolve => stream.once('drain', resolve))
  }
}

/** The line of a failed child's output that says why (with the file, for a load error Node printed), as the reason. */
export function reasonOf (text: string, fallback: string): string {
  const lines = text.split('\n').map(l => l.trim()).filter(Boolean)
  const line = lines.find(l => /^(fastify-reuseport: |\w*Error\b)/.test(l)) ?? lines[lines.length - 1]
  // Node prints a load error as "<file>:<line>", the source line, a caret, then the error.
  const where = /^\/\S+:\d+$/.test(lines[0] ?? '') && line !== lines[0] ? `${lines[0] as string}: ` : ''
  return (where + (line ?? fallback).replace(/^fastify-reuseport: /, '')).slice(0, 400)
}

export class Upgrader {
  /** An upgrade is under way here: checking, or, after the execve, rolling the adopted workers. */
  private busy = false
  private preflightChild: ChildProcess | null = null
  /** Upgrades this process has been through (carried in the state, not the environment). */
  private generation = 0

  constructor (
    private readonly ctx: Context,
    private readonly operations: Operations,
    private readonly metrics: () => http.Server | null,
    /** A worker's partial log lines read and not yet forwarded. */
    private readonly held: (worker: Worker) => { stdout: Buffer, stderr: Buffer }
  ) {}

  /** The CLI script this process was started with: `npm update` replaces it, SIGUSR2 runs it. */
  static script (): string {
    return path.resolve(process.argv[1] ?? '')
  }

  async upgrade (): Promise<void> {
    const { log } = this.ctx
    if (this.busy) {
      const err = new FST_REUSEPORT_UPGRADE_FAILED('an upgrade is already in progress; this request is refused')
      log.warn({ err }, `upgrade: ${err.message}`)
      throw err
    }
    this.busy = true
    try {
      await this.operations.exclusive(() => this.attempt())
    } catch (err) {
      const e = (err as Error & { code?: string }).code === 'FST_REUSEPORT_UPGRADE_FAILED' ? err as Error : new FST_REUSEPORT_UPGRADE_FAILED((err as Error).message)
      log.error({ err: e }, `upgrade: ${e.message}`)
      throw e
    } finally {
      this.busy = false
    }
  }

  /** After the execve: the adopted workers are rolled onto the new code; no other upgrade meanwhile. */
  roll (state: CarriedState): void {
    const { log, table } = this.ctx
    this.busy = true
    this.generation = state.generation
    log.info({ generation: state.generation, from: state.from, version: packageVersion() },
      `upgrade: fastify-reuseport ${packageVersion()} (was ${state.from}${state.fromNode !== undefined && state.fromNode !== process.version ? ` on Node ${state.fromNode}` : ''}) now runs in pid ${process.pid} on Node ${process.version}; ${table.slots.length} workers adopted, rolling them onto the new code`)
    this.operations.reload().then(() => {
      log.info(`upgrade: done, every slot runs fastify-reuseport ${packageVersion()}`)
    }, (err: Error) => {
      log.error({ err }, `upgrade: the new program serves, but rolling the workers stopped: ${err.message}; SIGHUP retries`)
    }).finally(() => { this.busy = false })
  }

  /** Shutting down: a preflight under way is not waited for. */
  abort (): void {
    this.preflightChild?.kill('SIGKILL')
  }

  private async attempt (): Promise<void> {
    const { log, sockets, table } = this.ctx
    if (sockets.balancer !== 'reuseport') throw new FST_REUSEPORT_UPGRADE_FAILED('the cluster balancer cannot be upgraded in place (its workers listen through this process); restart the service instead')
    const { binding } = loadNative()
    if (binding === null || typeof binding.execve !== 'function') throw new FST_REUSEPORT_UPGRADE_FAILED('the native addon of the running code has no execve')
    const script = Upgrader.script()
    const protocols = [...new Set([...table.workers()].map(w => w.protocol ?? 1))]
    log.info(`upgrade: checking the new code (${script}) in a preflight child`)
    const found = await this.preflight(script, protocols)
    if (table.closing) throw new FST_REUSEPORT_UPGRADE_FAILED('the supervisor is shutting down')
    await this.steady()
    const state = this.state()
    await this.exec(binding, script, state, found)
  }

  /** Runs the new code's own check: loads every module and the addon, and says whether it reads our state and speaks to our workers. */
  private preflight (script: string, protocols: number[]): Promise<{ version: string, node: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [...process.execArgv, script, '--preflight', String(STATE_VERSION), protocols.join(',')], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, [STATE_ENV]: undefined }
      })
      this.preflightChild = child
      let out = ''
      child.stdout?.on('data', d => { out += String(d) })
      child.stderr?.on('data', d => { out += String(d) })
      const timer = setTimeout(() => child.kill('SIGKILL'), PREFLIGHT_MS)
      child.once('error', err => { clearTimeout(timer); reject(new FST_REUSEPORT_UPGRADE_FAILED(`the preflight could not run: ${err.message}`)) })
      child.once('close', (code, signal) => {
        clearTimeout(timer)
        this.preflightChild = null
        if (code === 0) {
          try {
            const r = JSON.parse(out.trim().split('\n').pop() ?? '') as { ok?: unknown, version?: unknown, node?: unknown }
            if (r.ok === true) return resolve({ version: String(r.version), node: String(r.node) })
          } catch { /* an old CLI without --preflight: said below */ }
        }
        const why = signal === 'SIGKILL' && this.ctx.table.closing ? 'the supervisor is shutting down' : `the new code failed its preflight (${signal !== null ? `signal ${signal}` : `exit ${String(code)}`}): ${reasonOf(out, 'no output')}`
        reject(new FST_REUSEPORT_UPGRADE_FAILED(why))
      })
    })
  }

  /** Waits, bounded, until every slot has exactly its one ready worker: nothing starting or draining is left behind. */
  private async steady (): Promise<void> {
    const { table, settings } = this.ctx
    const deadline = Date.now() + settings.closeGraceDelay + settings.readyTimeout
    const unsteady = (): string | null => {
      for (const s of table.slots) {
        if (s.retiring) return `${table.line(s)} is being retired`
        if (s.worker?.state !== 'ready') return `${table.line(s)} has no ready worker`
        if (s.workers.size > 1) return `${table.line(s)} has a worker starting or draining`
      }
      return null
    }
    for (let why = unsteady(); why !== null; why = unsteady()) {
      if (table.closing) throw new FST_REUSEPORT_UPGRADE_FAILED('the supervisor is shutting down')
      if (Date.now() > deadline) throw new FST_REUSEPORT_UPGRADE_FAILED(`the workers did not settle: ${why}`)
      await new Promise(resolve => setTimeout(resolve, STEADY_POLL_MS))
    }
  }

  private state (): CarriedState {
    const { table, settings, sockets, clock } = this.ctx
    const now = clock.now()
    return {
      version: STATE_VERSION,
      generation: this.generation + 1,
      from: packageVersion(),
      fromNode: process.version,
      settings: { ...settings },
      port: sockets.port,
      metricsFd: this.metrics() === null ? null : fdOf(this.metrics()),
      tickets: this.ctx.tickets.carry(),
      slots: table.slots.map(s => ({
        listeners: s.listeners.map(l => ({ ...l })),
        restarts: s.restarts,
        stalls: s.stalls,
        replacements: { ...s.replacements },
        acceptedBefore: s.acceptedBefore,
        handedOffBefore: s.handedOffBefore + (s.handoff?.count ?? 0),
        lastExit: s.lastExit,
        worker: carriedWorker(s.worker as Worker, now, this.held(s.worker as Worker))
      }))
    }
  }

  /** Does not return when it works. */
  private async exec (binding: NativeBinding, script: string, state: CarriedState, found: { version: string, node: string }): Promise<void> {
    const { log } = this.ctx
    // 0-2 too: Node marks its stdio close-on-exec (fdinfo shows O_CLOEXEC on them).
    const fds = [0, 1, 2, ...carriedFds(state)]
    const cleared: number[] = []
    let memfd = -1
    try {
      for (const fd of fds) { binding.clearCloexec(fd); cleared.push(fd) }
      memfd = writeState(binding, state)
      log.info({ version: found.version, node: found.node }, `upgrade: preflight passed (fastify-reuseport ${found.version}, Node ${found.node}); replacing the supervisor program in place, pid ${process.pid}`)
    } catch (err) {
      this.undo(binding, cleared, memfd)
      throw new FST_REUSEPORT_UPGRADE_FAILED(`could not hand the sockets over: ${(err as Error).message}`)
    }
    const env = Object.entries({ ...process.env, [STATE_ENV]: String(memfd) })
      .filter((e): e is [string, string] => e[1] !== undefined).map(([k, v]) => `${k}=${v}`)
    const argv = [process.execPath, ...process.execArgv, script, ...process.argv.slice(2)]
    try {
      // What is queued for stdout is lost at execve: flushed first, and
      // nothing may run between the last check and the call.
      await stdioFlushed()
      if (process.stdout.writableLength > 0 || process.stderr.writableLength > 0) throw new Error('stdout stayed busy')
      if (this.ctx.table.closing) throw new Error('the supervisor is shutting down')
      binding.execve(process.execPath, argv, env)
    } catch (err) {
      this.undo(binding, cleared, memfd)
      throw new FST_REUSEPORT_UPGRADE_FAILED(`execve failed, nothing changed: ${(err as Error).message}`)
    }
  }

  /** execve failed: the fds are close-on-exec again (0-2 are left inheritable: children get them anyway), the memfd closed. */
  private undo (binding: NativeBinding, cleared: number[], memfd: number): void {
    for (const fd of cleared) if (fd > 2) try { binding.setCloexec(fd) } catch { /* closed meanwhile */ }
    if (memfd >= 0) try { fs.closeSync(memfd) } catch { /* already */ }
  }
}

function carriedWorker (w: Worker, now: number, held: { stdout: Buffer, stderr: Buffer }): CarriedWorker {
  const child = w.proc.child
  const adopted = adoptedFds.get(w.proc)
  return {
    pid: w.pid,
    protocol: w.protocol ?? PROTOCOL,
    readyFor: now - (w.readyAt ?? now),
    addresses: w.addresses,
    control: adopted?.control ?? fdOf(child?.stdio[4]),
    stdout: adopted?.stdout ?? fdOf(child?.stdout),
    stderr: adopted?.stderr ?? fdOf(child?.stderr),
    stdoutHeld: held.stdout.toString('base64'),
    stderrHeld: held.stderr.toString('base64'),
    accepted: w.accepted,
    open: w.open,
    rss: w.rss,
    requests: w.requests,
    requestLimit: w.requestLimit
  }
}
