// Blocking work never runs on the JS main thread: execs overlap and timers keep firing.
'use strict'
const { describe, test } = require('node:test')
const assert = require('node:assert')
const { privileged, useRuntime, sandbox } = require('./helpers')

describe('concurrency', privileged(), () => {
  const ctx = useRuntime()

  test('8 concurrent execs overlap in time', async (t) => {
    const sb = await sandbox(t, ctx.rt)
    const start = Date.now()
    const results = await Promise.all(Array.from({ length: 8 }, () => sb.exec('sleep 1')))
    const elapsed = Date.now() - start
    assert.deepStrictEqual(results.map((r) => r.exitCode), Array(8).fill(0))
    assert.ok(elapsed < 4000, `8 x 1 s execs took ${elapsed} ms: they did not overlap`)
  })

  test('a 10 ms timer keeps firing during a 2 s exec', async (t) => {
    const sb = await sandbox(t, ctx.rt)
    let ticks = 0
    const timer = setInterval(() => {
      ticks += 1
    }, 10)
    try {
      await sb.exec('sleep 2')
    } finally {
      clearInterval(timer)
    }
    assert.ok(ticks > 50, `only ${ticks} ticks of a 10 ms timer in 2 s: the event loop was blocked`)
  })

  test('files and create do not block the event loop either', async (t) => {
    let ticks = 0
    const timer = setInterval(() => {
      ticks += 1
    }, 10)
    try {
      const sb = await sandbox(t, ctx.rt)
      await sb.files.write('/data/f', Buffer.alloc(1 << 20))
      await sb.exec('sleep 0.5')
    } finally {
      clearInterval(timer)
    }
    assert.ok(ticks > 10, `only ${ticks} ticks`)
  })
})
