'use strict'

// A naive reuseport deployment: N processes, each opening its own SO_REUSEPORT
// socket (the plugin, or Node 22's reusePort). SIGHUP replaces them one by one:
// start a new process with a new socket, wait until it listens, then close the
// old one, whose socket closes with whatever is queued on it.
const { spawn } = require('node:child_process')
const path = require('node:path')

const n = Number(process.env.WORKERS ?? 2)
const script = path.join(__dirname, process.env.CHILD ?? 'plugin.js')
let stopping = false
const start = () => new Promise(resolve => {
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'], env: process.env })
  child.stdout.once('data', () => resolve(child))
  // A crashed process is replaced, as any supervisor would do.
  child.once('exit', (code, signal) => {
    const i = children.indexOf(child)
    if (signal === 'SIGKILL' && i >= 0 && !stopping) start().then(c => { children[i] = c })
  })
})
let children = []
Promise.all(Array.from({ length: n }, start)).then(c => { children = c; process.stdout.write('ready\n') })
process.on('SIGHUP', async () => {
  for (let i = 0; i < children.length; i++) {
    const old = children[i]
    children[i] = await start()
    old.kill('SIGTERM')
  }
  process.stdout.write('reloaded\n')
})
process.on('SIGTERM', () => { stopping = true; for (const c of children) c.kill('SIGKILL'); process.exit(0) })
