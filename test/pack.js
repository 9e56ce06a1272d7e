'use strict'

// `npm pack` of this package as it would be published, from a copy of the
// source: prepare's tsc then writes the copy's dist/, not the one the tests
// running next to this one load. Returns the tarball's path and npm's file list.
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { ROOT } = require('./helpers')

const SOURCES = ['package.json', 'tsconfig.json', 'README.md', 'binding.gyp', 'index.ts', 'lib', 'native', 'scripts', 'types', 'prebuilds']

function packPackage (dir, { drop = [] } = {}) {
  const src = path.join(dir, 'src')
  for (const entry of SOURCES) {
    if (fs.existsSync(path.join(ROOT, entry))) fs.cpSync(path.join(ROOT, entry), path.join(src, entry), { recursive: true })
  }
  for (const file of drop) fs.rmSync(path.join(src, file))
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(src, 'node_modules'))
  const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', dir], { cwd: src, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }))[0]
  return { tarball: path.join(dir, packed.filename), files: packed.files.map(f => f.path) }
}

module.exports = { packPackage }
