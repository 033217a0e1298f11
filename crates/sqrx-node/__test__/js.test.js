// runJs: QuickJS in-process.
'use strict'
const { test } = require('node:test')
const assert = require('node:assert')
const { runJs } = require('..')

test('result and input', async () => {
  const res = await runJs('1+2')
  assert.strictEqual(res.status, 'success')
  assert.strictEqual(res.result, 3)
  assert.strictEqual(res.error, false)
  assert.deepStrictEqual(res.log, [])
  assert.ok(res.executionTime >= 0)
  const res2 = await runJs('input.xs.reduce((a, b) => a + b, 0)', { input: { xs: [1, 2, 3] } })
  assert.strictEqual(res2.result, 6)
})

test('console and thrown errors', async () => {
  const res = await runJs("console.log('hi', {a: 1}); await Promise.resolve(5)")
  assert.strictEqual(res.result, 5)
  assert.deepStrictEqual(res.log.map((e) => [e.type, e.data]), [['log', ['hi', { a: 1 }]]])
  const bad = await runJs("throw new TypeError('boom')")
  assert.strictEqual(bad.status, 'error')
  assert.strictEqual(bad.error.name, 'TypeError')
  assert.strictEqual(bad.error.message, 'boom')
})

test('limits', async () => {
  assert.strictEqual((await runJs('for (;;) {}', { timeoutMs: 100 })).status, 'timeout')
  const oom = await runJs('let a = []; for (;;) a.push(new Array(1e5).fill(1))', { memoryMb: 8 })
  assert.strictEqual(oom.status, 'out_of_memory')
})
