'use strict'

// Run by Bun's musl build (test/unit/musl.test.js): loads the addon the way the
// package does (dist/lib/common/native.js: node-gyp-build, LIBC=musl picks
// prebuilds/*/node.napi.musl.node), opens a SO_REUSEPORT listener with it, and
// serves one HTTP request accepted from that listener. Bun's net and http
// ignore listen({ fd }), so the accept, read and write go through musl's libc
// with bun:ffi. Prints one JSON line, then 'served'.
const path = require('node:path')
const { dlopen, FFIType, ptr } = require('bun:ffi')

const root = process.argv[2]
const { loadNative } = require(path.join(root, 'dist', 'lib', 'common', 'native.js'))
const { binding, reason } = loadNative()
if (binding === null) {
  console.log(JSON.stringify({ error: reason }))
  process.exit(1)
}
const file = require(require.resolve('node-gyp-build', { paths: [root] })).path(root)
const { fd, port } = binding.createListener('127.0.0.1', 0, 511, false)
const libc = dlopen('libc.so', {
  accept4: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
  read: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
  write: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
  close: { args: [FFIType.i32], returns: FFIType.i32 }
}).symbols
console.log(JSON.stringify({ addon: path.relative(root, file), port, runtime: `bun ${process.versions.bun}`, arch: process.arch }))

const deadline = Date.now() + 20000
function serveOne () {
  if (Date.now() > deadline) {
    console.log('no connection in 20 s')
    process.exit(1)
  }
  // The listener is non-blocking (the addon's own): poll by retrying.
  const c = libc.accept4(fd, null, null, 0)
  if (c < 0) return setTimeout(serveOne, 10)
  const buf = new Uint8Array(4096)
  const n = Number(libc.read(c, ptr(buf), buf.length))
  const requestLine = new TextDecoder().decode(buf.subarray(0, Math.max(n, 0))).split('\r\n')[0]
  const body = JSON.stringify({ requestLine, queue: binding.queueInfo(fd), runtime: `bun ${process.versions.bun}`, arch: process.arch })
  const out = new TextEncoder().encode(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`)
  libc.write(c, ptr(out), out.length)
  libc.close(c)
  binding.close(fd)
  console.log('served')
}
serveOne()
