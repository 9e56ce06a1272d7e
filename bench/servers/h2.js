'use strict'

// The benchmark app over HTTP/2 cleartext, for `fastify-reuseport start -o`.
module.exports = require('./app')
module.exports.options = { http2: true }
