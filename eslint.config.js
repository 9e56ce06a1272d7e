'use strict'

// fastify's own style: neostandard, with TypeScript.
module.exports = [
  ...require('neostandard')({
    ts: true,
    ignores: ['test/fixtures/bad-syntax/**', 'dist/**', 'build/**', 'prebuilds/**', 'bench/.work/**', 'coverage/**', '.tap/**', 'node_modules/**', '.zig-cache/**', '.node*/**']
  }),
  {
    rules: {
      // `void promise`: a promise deliberately not awaited (its rejection is handled where it is made).
      'no-void': ['error', { allowAsStatement: true }]
    }
  }
]
