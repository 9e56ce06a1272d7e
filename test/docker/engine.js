'use strict'

// A Docker engine for the Docker test: the one running, else dockerd started
// here (no iptables, no bridge, vfs storage:
// what works in a VM or a container without overlayfs), stopped again at the
// end. Images live in /var/lib/docker, so the base image built once stays.
const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { hasCommand, sleep } = require('../helpers')

const DOCKERD_ARGS = ['--iptables=false', '--ip6tables=false', '--bridge=none', '--storage-driver=vfs']

function docker (args, options = {}) {
  return spawnSync('docker', args, { encoding: 'utf8', timeout: 600000, maxBuffer: 64 << 20, ...options })
}

function engineUp () {
  return docker(['info', '--format', '{{.ServerVersion}}'], { timeout: 10000 }).status === 0
}

/** Why the engine cannot start here, or null. */
function whyNot () {
  if (process.platform !== 'linux') return `Docker's engine runs on Linux, this is ${process.platform}`
  if (!hasCommand('docker')) return 'no docker client (Debian package docker.io)'
  if (engineUp()) return null
  if (process.getuid?.() !== 0) return 'no running Docker engine, and starting dockerd needs root (CI runs as root)'
  if (!hasCommand('dockerd')) return 'no running Docker engine and no dockerd (Debian package docker.io)'
  if (!fs.existsSync('/sys/fs/cgroup/cpu') && !fs.existsSync('/sys/fs/cgroup/cgroup.controllers')) return 'no cgroup filesystem at /sys/fs/cgroup: dockerd cannot run containers'
  return null
}

/** Starts dockerd unless one runs; resolves to a stop function (a no-op for an engine we did not start). */
async function ensureEngine () {
  if (engineUp()) return async () => {}
  const log = path.join(os.tmpdir(), `fr-dockerd-${process.pid}.log`)
  const out = fs.openSync(log, 'w')
  const child = spawn('dockerd', DOCKERD_ARGS, { stdio: ['ignore', out, out] })
  fs.closeSync(out)
  let exited = null
  child.once('exit', (code, signal) => { exited = { code, signal } })
  const gone = () => exited !== null
  const stop = async () => {
    if (gone()) return
    child.kill('SIGTERM')
    for (let i = 0; i < 200 && !gone(); i++) await sleep(100)
    if (!gone()) child.kill('SIGKILL')
  }
  for (let i = 0; i < 300 && !gone(); i++) {
    if (engineUp()) return stop
    await sleep(100)
  }
  await stop()
  const tail = fs.readFileSync(log, 'utf8').trim().split('\n').slice(-5).join('\n')
  throw new Error(`dockerd did not start (log ${log}):\n${tail}`)
}

module.exports = { DOCKERD_ARGS, docker, ensureEngine, whyNot }
