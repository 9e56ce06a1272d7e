'use strict'

// systemd's side, with a real AF_UNIX datagram socket standing in for it
// (test/fixtures/fake-systemd.py): readiness and reload states in order, each
// slot's listener in the fd store, and a supervisor killed with SIGKILL
// (with its whole process group, as KillMode=control-group) started again
// from the fd store, serving every connection that queued meanwhile.
const t = require('tap')
const { spawn } = require('node:child_process')
const crypto = require('node:crypto')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { CLI, FIXTURES, hasCommand, processesWith, sleep, waitFor } = require('../helpers')

const skip = !hasCommand('python3') && 'needs python3 (Debian package python3) to stand in for systemd'
if (skip) t.comment(`skipping systemd tests: ${skip}`)

const QUEUED = 40

function fakeSystemd (t, args, options = []) {
  const marker = `frp-sd-${crypto.randomUUID()}`
  const sock = path.join(os.tmpdir(), `${marker}.sock`)
  const child = spawn('python3', [path.join(FIXTURES, 'fake-systemd.py'), sock, ...options, '--', process.execPath, CLI, ...args], {
    env: { ...process.env, FASTIFY_ADDRESS: '127.0.0.1', REUSEPORT_TEST_MARKER: marker },
    stdio: ['pipe', 'pipe', 'inherit']
  })
  const events = []
  let text = ''
  let partial = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', d => {
    text += d
    const lines = (partial + d).split('\n')
    partial = lines.pop()
    for (const line of lines) if (line.startsWith('SD ')) events.push(JSON.parse(line.slice(3)))
  })
  t.teardown(() => {
    child.stdin.end()
    child.kill('SIGKILL')
    for (const pid of processesWith(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
  })
  const messages = () => events.filter(e => e.message).map(e => e.message.split('\n')[0])
  return { child, events, messages, text: () => text, send: cmd => child.stdin.write(cmd + '\n'), marker }
}

/** A request on a fresh connection; resolves to the status line, or the error. */
function request (port) {
  return new Promise(resolve => {
    const socket = net.connect(port, '127.0.0.1')
    let data = ''
    socket.setEncoding('utf8')
    socket.on('connect', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'))
    socket.on('data', d => { data += d })
    socket.on('close', () => resolve(data.split('\r\n')[0]))
    socket.on('error', err => resolve(err.code))
    socket.setTimeout(20000, () => socket.destroy())
  })
}

t.test('READY, RELOADING, the fd store, and a SIGKILLed supervisor restarted from it, losing nothing', { skip }, async t => {
  const sd = fakeSystemd(t, ['start', '-w', '2', '-p', '0', path.join(FIXTURES, 'app.js')])
  await waitFor(() => sd.messages().includes('READY=1'), { timeout: 20000, what: 'READY=1' })
  t.same(sd.messages(), ['FDSTORE=1', 'FDSTORE=1', 'READY=1'], 'each slot stored, then ready')
  t.same(sd.events.filter(e => e.message?.startsWith('FDSTORE')).map(e => [e.message.split('\n')[1], e.fds]), [['FDNAME=slot-0', 1], ['FDNAME=slot-1', 1]])
  const ready = sd.events.find(e => e.message?.startsWith('READY=1'))
  const mainPid = Number(/MAINPID=(\d+)/.exec(ready.message)[1])
  t.equal(mainPid, sd.events[0].started, 'MAINPID is the supervisor')
  const port = Number(/127\.0\.0\.1:(\d+)/.exec(sd.text())[1])
  t.match(await request(port), /200 OK/)

  sd.send('hup')
  await waitFor(() => sd.messages().filter(m => m === 'READY=1').length === 2, { timeout: 20000, what: 'READY=1 after the reload' })
  const reload = sd.events.find(e => e.message?.startsWith('RELOADING=1'))
  t.match(reload.message, /^RELOADING=1\nMONOTONIC_USEC=\d+$/, 'RELOADING=1 with the monotonic time')
  t.same(sd.messages().slice(3), ['RELOADING=1', 'READY=1'], 'reloading, then ready again')

  sd.send('kill')
  await waitFor(() => sd.events.some(e => e.killed), { what: 'the kill' })
  t.same(processesWith(sd.marker).filter(p => p !== sd.child.pid), [], 'the supervisor and its workers are gone')
  // Nobody serves now, but the fd store holds the sockets: these connect, and wait.
  const answers = Promise.all(Array.from({ length: QUEUED }, () => request(port)))
  await sleep(500)
  sd.send('restart')
  const served = await answers
  t.same(served.filter(s => !/200 OK/.test(s)), [], `all ${QUEUED} connections made while no supervisor ran were served`)
  t.ok(sd.events.some(e => e.listen_fds === 2), 'restarted with LISTEN_FDS=2')
  t.match(sd.text(), /systemd: adopted the listeners of 2 slots/)
  t.equal(sd.events.filter(e => e.message?.startsWith('FDSTORE')).at(-1).store.length, 2, 'the store holds each socket once')

  sd.send('term')
  await waitFor(() => sd.events.some(e => 'exited' in e), { timeout: 20000, what: 'the exit' })
  t.equal(sd.events.find(e => 'exited' in e).exited, 0, 'exit 0')
  t.equal(sd.messages().at(-1), 'STOPPING=1', 'STOPPING=1 last')
})

t.test('socket activation: listeners systemd made, named slot-N, are the slots; any other fd is closed with a line', { skip }, async t => {
  const sd = fakeSystemd(t, ['start', '-w', '1', '-p', '0', path.join(FIXTURES, 'app.js')], ['--activate', '2'])
  await waitFor(() => sd.messages().includes('READY=1'), { timeout: 20000, what: 'READY=1' })
  t.ok(sd.events.some(e => e.started && e.listen_fds === 3), 'started with three fds: two slots and a stranger')
  t.match(sd.text(), /systemd: fd 5 \(other\) is not a slot: a listening TCP socket with SO_REUSEPORT named slot-N; closed/)
  t.match(sd.text(), /systemd: adopted the listeners of 2 slots/)
  t.equal((sd.text().match(/: worker \d+ serving 127\.0\.0\.1:/g) ?? []).length, 2, 'two workers, one per activated slot, although -w 1')
  const port = sd.events.find(e => e.activated).activated
  t.match(sd.text(), new RegExp(`serving 127\\.0\\.0\\.1:${port}`), 'on the port systemd bound')
  const answers = await Promise.all(Array.from({ length: 10 }, () => request(port)))
  t.same(answers.filter(s => !/200 OK/.test(s)), [], 'they serve')
  sd.send('term')
  await waitFor(() => sd.events.some(e => 'exited' in e), { timeout: 20000, what: 'the exit' })
  t.equal(sd.events.find(e => 'exited' in e).exited, 0)
})
