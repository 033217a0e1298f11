// The `sqrx` package (CommonJS entry; index.mjs is the ESM one). Loads the native addon and
// adds what JavaScript expresses better than napi: SqrxError with `code`, async iteration of
// exec streams, `await using` for sandboxes, and the packaged sqrx-init as the default init.
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const native = require('./sqrx.node')

/** The core's error kinds, the values of `SqrxError.code`. */
const ERROR_CODES = Object.freeze([
  'NotFound',
  'AlreadyExists',
  'InvalidArgument',
  'LimitExceeded',
  'Conflict',
  'Unavailable',
  'Timeout',
  'PermissionDenied',
  'InsufficientStorage',
  'Internal',
])
const KIND_PREFIX = new RegExp(`^(${ERROR_CODES.join('|')}): ([\\s\\S]*)$`)

/** Every sqrx failure: `code` is the core's error kind (`'NotFound'`, ...). */
class SqrxError extends Error {
  constructor(message, code, options) {
    super(message, options)
    this.name = 'SqrxError'
    this.code = code
  }
}

// The addon reports failures as "<Kind>: <message>" (napi-rs rejects Promises only with its
// own status codes); split the kind off into a SqrxError. Anything else (a TypeError for a bad
// argument type) passes through.
function toSqrxError(e) {
  const m = e instanceof Error && !(e instanceof SqrxError) ? KIND_PREFIX.exec(e.message) : null
  return m ? new SqrxError(m[2], m[1], { cause: e }) : e
}

function translated(fn) {
  return function (...args) {
    let out
    try {
      out = fn.apply(this, args)
    } catch (e) {
      throw toSqrxError(e)
    }
    return out instanceof Promise ? out.catch((e) => Promise.reject(toSqrxError(e))) : out
  }
}

for (const cls of [native.Runtime, native.Sandbox, native.Files, native.ExecStream, native.Process]) {
  for (const target of [cls.prototype, cls]) {
    for (const [name, d] of Object.entries(Object.getOwnPropertyDescriptors(target))) {
      if (typeof d.value === 'function' && name !== 'constructor' && name !== 'prototype') {
        Object.defineProperty(target, name, { ...d, value: translated(d.value) })
      }
    }
  }
}

native.ExecStream.prototype[Symbol.asyncIterator] = async function* events() {
  try {
    for (;;) {
      const event = await this.next()
      if (event === null || event === undefined) return
      yield event
    }
  } finally {
    // Leaving the loop early stops the exec.
    await this.close()
  }
}

native.Sandbox.prototype[Symbol.asyncDispose] = function asyncDispose() {
  return this.destroy()
}

const packagedInit = path.join(__dirname, 'sqrx-init')
const openRuntime = native.Runtime.open
Object.defineProperty(native.Runtime, 'open', {
  value: function open(options = {}) {
    const opts = { ...options }
    if (opts.initPath == null && !process.env.SQRX_INIT && fs.existsSync(packagedInit)) {
      opts.initPath = packagedInit
    }
    return openRuntime.call(this, opts)
  },
  writable: true,
  configurable: true,
})

module.exports = {
  Runtime: native.Runtime,
  Sandbox: native.Sandbox,
  Files: native.Files,
  ExecStream: native.ExecStream,
  Process: native.Process,
  SqrxError,
  ERROR_CODES,
  runJs: translated(native.runJs),
  listLayers: translated(native.listLayers),
  version: native.version,
}
