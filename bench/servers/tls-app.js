'use strict'

// The benchmark app over HTTPS, for fastify-reuseport start -o: its exported
// options become Fastify's. Key and certificate from TLS_KEY and TLS_CERT.
const fs = require('node:fs')

module.exports = require('./app')
module.exports.options = { https: { key: fs.readFileSync(process.env.TLS_KEY), cert: fs.readFileSync(process.env.TLS_CERT) } }
