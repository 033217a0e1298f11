// Smoke test of the Node addon: it loads and reaches the core's layer store.
'use strict'
const test = require('node:test')
const assert = require('node:assert')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const sqrx = require('..')

test('version is semver', () => {
  assert.match(sqrx.version(), /^\d+\.\d+\.\d+$/)
})

test('an empty store lists nothing', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqrx-test-node-'))
  try {
    assert.deepStrictEqual(sqrx.listLayers(dir), [])
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('errors carry the kind', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqrx-test-node-'))
  try {
    const file = path.join(dir, 'file')
    fs.writeFileSync(file, 'not a directory')
    assert.throws(
      () => sqrx.listLayers(file),
      (e) => e instanceof sqrx.SqrxError && sqrx.ERROR_CODES.includes(e.code),
    )
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
