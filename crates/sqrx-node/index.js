// Loads the native addon built by `napi build` (or copied from cargo's target dir as sqrx.node).
'use strict'
module.exports = require('./sqrx.node')
