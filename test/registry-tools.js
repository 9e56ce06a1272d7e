'use strict'

// Tools the tests fetch from the npm registry as packages, unpacked once into
// node_modules/.cache/fastify-reuseport-tools/<spec>/ with `npm pack` (under
// node_modules: out of git, lint and the coverage report), which runs no script
// and ignores "os"/"cpu"/"libc": npm 11, pnpm 10, Bun (glibc and musl builds).
// { dir, why }: why says why there is none.
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { ROOT } = require('./helpers')

const TOOLS = path.join(ROOT, 'node_modules', '.cache', 'fastify-reuseport-tools')

function fetchPackage (spec) {
  const dir = path.join(TOOLS, spec.replace(/\//g, '+'))
  if (fs.existsSync(path.join(dir, 'package.json'))) return { dir, why: null }
  try {
    fs.mkdirSync(TOOLS, { recursive: true })
    const tmp = fs.mkdtempSync(path.join(TOOLS, '.fetch-'))
    try {
      const [packed] = JSON.parse(execFileSync('npm', ['pack', '--json', spec], { cwd: tmp, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 240000 }))
      fs.mkdirSync(path.join(tmp, 'x'))
      execFileSync('tar', ['-xzf', packed.filename, '-C', 'x', '--strip-components=1'], { cwd: tmp })
      fs.mkdirSync(TOOLS, { recursive: true })
      fs.renameSync(path.join(tmp, 'x'), dir)
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true })
    }
    return { dir, why: null }
  } catch (err) {
    return { dir: null, why: `could not fetch ${spec} from the npm registry: ${err.message.split('\n')[0]}` }
  }
}

/** The Bun package for this machine: linux-x64 or linux-aarch64, glibc or musl. */
function bunPackage (libc = 'glibc', arch = process.arch) {
  const a = arch === 'arm64' ? 'aarch64' : arch
  return `@oven/bun-linux-${a}${libc === 'musl' ? '-musl' : ''}`
}

module.exports = { TOOLS, fetchPackage, bunPackage }
