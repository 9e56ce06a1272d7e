'use strict'

// The package.json that `npm pack` ships has no `prepare` script.
//
// `prepare` builds this repository in a clone (the addon from source where no
// prebuilt binary fits, then tsc). In the packed package.json it would be an
// install script to npm 11 whenever the package is installed from a tarball
// file or a URL: npm 11 lists `prepare` of non-registry dependencies among the
// scripts that need allowScripts approval (@npmcli/arborist
// lib/install-scripts.js), and prints "1 package has install scripts not yet
// covered by allowScripts". The packed package needs no step at all.
//
//   node scripts/pack-manifest.js strip      (prepack)
//   node scripts/pack-manifest.js restore    (postpack)
const fs = require('node:fs')
const path = require('node:path')

const FILE = path.join(__dirname, '..', 'package.json')
const BACKUP = `${FILE}.unpacked`

function strip () {
  // A backup left by a pack that failed half-way is the true original.
  const original = fs.existsSync(BACKUP) ? fs.readFileSync(BACKUP, 'utf8') : fs.readFileSync(FILE, 'utf8')
  fs.writeFileSync(BACKUP, original)
  const manifest = JSON.parse(original)
  delete manifest.scripts.prepare
  fs.writeFileSync(FILE, JSON.stringify(manifest, null, 2) + '\n')
}

function restore () {
  if (!fs.existsSync(BACKUP)) return
  fs.writeFileSync(FILE, fs.readFileSync(BACKUP, 'utf8'))
  fs.rmSync(BACKUP)
}

const command = process.argv[2]
if (command === 'strip') strip()
else if (command === 'restore') restore()
else {
  process.stderr.write('usage: node scripts/pack-manifest.js strip|restore\n')
  process.exitCode = 2
}
