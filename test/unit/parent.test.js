'use strict'

// lib/supervisor/parent.ts: which parent a supervisor follows (issue 17.4).
const t = require('tap')
const { launcherOf, isShellC, parentToFollow } = require('../../dist/lib/supervisor/parent')

const NPX_TITLE = 'npm exec fastify-reuseport start -p 3000 app.js\0\0\0'
const NPM_RUN = '/usr/bin/node\0/usr/lib/node_modules/npm/bin/npm-cli.js\0start\0'
const SH_C = 'sh\0-c\0fastify-reuseport start app.js\0'

t.test('launcherOf: npm and npx, by title or by script', async t => {
  t.equal(launcherOf(NPX_TITLE), 'npx', "npx's process calls itself 'npm exec'")
  t.equal(launcherOf('npm start\0'), 'npm')
  t.equal(launcherOf(NPM_RUN), 'npm', 'node npm-cli.js, before the title is set')
  t.equal(launcherOf('/usr/bin/node\0/usr/lib/node_modules/npm/bin/npx-cli.js\0x\0'), 'npx')
  t.equal(launcherOf('-bash\0'), null)
  t.equal(launcherOf('node\0server.js\0npm\0'), null, 'npm as a later argument is not npm')
})

t.test('isShellC: a non-interactive sh -c only', async t => {
  t.ok(isShellC(SH_C))
  t.ok(isShellC('/bin/dash\0-c\0x\0'))
  t.notOk(isShellC('-bash\0'), 'a login shell')
  t.notOk(isShellC('bash\0'), 'an interactive shell')
})

t.test('parentToFollow', async t => {
  const base = { pid: 500, ppid: 400, underSystemd: false, grandparent: null }
  t.same(parentToFollow({ ...base, parent: NPX_TITLE }), { launcher: 'npx', watch: null }, 'npx as the parent')
  t.same(parentToFollow({ ...base, parent: SH_C, grandparent: { pid: 300, cmdline: NPX_TITLE } }), { launcher: 'npx', watch: 300 }, 'npx behind its sh -c: watched')
  t.equal(parentToFollow({ ...base, parent: SH_C, grandparent: { pid: 300, cmdline: '-bash\0' } }), null, 'sh -c from a user shell')
  t.equal(parentToFollow({ ...base, parent: 'bash\0' }), null, 'an interactive shell: the job may outlive it')
  t.equal(parentToFollow({ ...base, pid: 1, parent: NPX_TITLE }), null, 'as PID 1')
  t.equal(parentToFollow({ ...base, ppid: 1, parent: NPX_TITLE }), null, 'a parent of PID 1')
  t.equal(parentToFollow({ ...base, underSystemd: true, parent: NPX_TITLE }), null, 'under systemd')
})
