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
  },
  {
    // Load loops stop when another task flips their flag; child scripts are built as strings.
    files: ['test/**', 'bench/**'],
    rules: {
      'no-unmodified-loop-condition': 'off',
      'no-template-curly-in-string': 'off',
      'no-return-assign': 'off'
    }
  }
]
