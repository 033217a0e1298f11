// SqrxError codes, each from a real failure.
'use strict'
const { describe, test } = require('node:test')
const assert = require('node:assert')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { Runtime, SqrxError, ERROR_CODES, runJs } = require('..')
const { privileged, newId, useRuntime, sandbox } = require('./helpers')

const code = (c) => (e) => {
  assert.ok(e instanceof SqrxError, `not a SqrxError: ${e}`)
  assert.ok(e instanceof Error)
  assert.strictEqual(e.code, c, e.message)
  assert.ok(!e.message.startsWith(`${c}:`), 'the kind prefix is stripped')
  return true
}

test('the codes are the core error kinds', () => {
  assert.deepStrictEqual([...ERROR_CODES], [
    'NotFound', 'AlreadyExists', 'InvalidArgument', 'LimitExceeded', 'Conflict',
    'Unavailable', 'Timeout', 'PermissionDenied', 'InsufficientStorage', 'Internal',
  ])
})

test('InvalidArgument from runJs limits', async () => {
  await assert.rejects(runJs('1', { memoryMb: 0 }), code('InvalidArgument'))
})

describe('errors from sandboxes', privileged(), () => {
  const ctx = useRuntime()

  test('NotFound', async (t) => {
    await assert.rejects(ctx.rt.get('no-such-sandbox'), code('NotFound'))
    const sb = await sandbox(t, ctx.rt)
    await assert.rejects(sb.files.read('/no/such/file'), code('NotFound'))
    await assert.rejects(sb.exec(['no-such-program']), code('NotFound'))
  })

  test('AlreadyExists', async (t) => {
    const sb = await sandbox(t, ctx.rt)
    await assert.rejects(ctx.rt.create({ id: sb.id }), code('AlreadyExists'))
  })

  test('InvalidArgument', async (t) => {
    await assert.rejects(ctx.rt.create({ id: 'not a valid id' }), code('InvalidArgument'))
    await assert.rejects(ctx.rt.create({ id: 'ok-id', memoryMb: 0 }), code('InvalidArgument'))
    const sb = await sandbox(t, ctx.rt)
    await assert.rejects(sb.exec('true', { workdir: 'relative' }), code('InvalidArgument'))
    await assert.rejects(sb.files.read('relative'), code('InvalidArgument'))
  })

  test('LimitExceeded', async (t) => {
    await sandbox(t, ctx.rt)
    const limited = await Runtime.open({ dataDir: ctx.dataDir, maxSandboxes: 1 })
    await assert.rejects(limited.create({ id: newId() }), code('LimitExceeded'))
  })

  test('Timeout', async (t) => {
    const sb = await sandbox(t, ctx.rt)
    const p = await sb.spawn('sleep 1000')
    await assert.rejects(p.wait(100), code('Timeout'))
    await p.kill(9)
    assert.deepStrictEqual(await p.wait(5000), { signal: 9 })
  })

  test('Conflict', async (t) => {
    const sb = await sandbox(t, ctx.rt)
    await sb.pause()
    try {
      await assert.rejects(sb.exec('true'), code('Conflict'))
    } finally {
      await sb.resume()
    }
  })

  test('PermissionDenied', async (t) => {
    const sb = await sandbox(t, ctx.rt)
    await sb.files.write('/data/not-executable', '#!/bin/sh\necho no\n', 0o644)
    await assert.rejects(sb.exec(['/data/not-executable']), code('PermissionDenied'))
  })

  test('Unavailable: a package without its sqrx-init', async (t) => {
    const pkg = fs.mkdtempSync(path.join(os.tmpdir(), 'sqrx-node-noinit-'))
    t.after(() => fs.rmSync(pkg, { recursive: true, force: true }))
    for (const f of ['index.js', 'sqrx.node', 'package.json']) {
      fs.copyFileSync(path.join(__dirname, '..', f), path.join(pkg, f))
    }
    const script = `
      const { Runtime, SqrxError } = require(${JSON.stringify(pkg)})
      Runtime.open({ dataDir: ${JSON.stringify(ctx.dataDir)} })
        .then((rt) => rt.create({ id: 'never-created' }))
        .then(() => console.log('created'), (e) => console.log(e instanceof SqrxError, e.code, e.message))`
    const env = { ...process.env }
    delete env.SQRX_INIT
    const out = execFileSync(process.execPath, ['-e', script], { env, encoding: 'utf8', timeout: 60000 })
    assert.match(out, /^true Unavailable cannot find sqrx-init/)
  })
})
