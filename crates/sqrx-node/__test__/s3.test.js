// Layers through a bucket from Node: push from one data directory, pull into another, sync,
// and a clear error without a bucket. Against moto in server mode on loopback, started here
// (scripts/s3-tools.sh installs it and sets SQRX_TEST_MOTO_SERVER).
'use strict'
const assert = require('node:assert/strict')
const { spawn, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { describe, test, before, after } = require('node:test')
const { Runtime } = require('..')
const { privileged, useRuntime, newId } = require('./helpers')

function motoProgram() {
  if (process.env.SQRX_TEST_MOTO_SERVER) return process.env.SQRX_TEST_MOTO_SERVER
  try {
    return execFileSync('sh', ['-c', 'command -v moto_server'], { encoding: 'utf8' }).trim() || null
  } catch {
    return null
  }
}

function freePort() {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

describe('layers in a bucket', () => {
  const ctx = useRuntime()
  let moto = null
  const saved = {}
  before(async () => {
    const program = motoProgram()
    if (!program) {
      if (process.env.SQRX_REQUIRE_PRIVILEGED === '1') throw new Error('moto_server is missing (scripts/s3-tools.sh)')
      return
    }
    const port = await freePort()
    moto = spawn(program, ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' })
    const endpoint = `http://127.0.0.1:${port}`
    const deadline = Date.now() + 30000
    for (;;) {
      try {
        const r = await fetch(`${endpoint}/node`, { method: 'PUT' })
        if (r.ok) break
      } catch {}
      if (Date.now() > deadline) throw new Error('moto did not start')
      await new Promise((r) => setTimeout(r, 100))
    }
    const env = {
      SQRX_S3_BUCKET: 'node',
      SQRX_S3_ENDPOINT: endpoint,
      AWS_ACCESS_KEY_ID: 'sqrx-test',
      AWS_SECRET_ACCESS_KEY: 'sqrx-test-secret',
      AWS_EC2_METADATA_DISABLED: 'true',
      // Explicit pushes unless a test turns background pushes on.
      SQRX_S3_AUTO_PUSH: '0',
    }
    for (const [k, v] of Object.entries(env)) {
      saved[k] = process.env[k]
      process.env[k] = v
    }
  })
  after(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
    if (moto) moto.kill()
  })

  // Without moto the test skips, except under SQRX_REQUIRE_PRIVILEGED=1 (CI), where `before`
  // fails it instead.
  const options = privileged()
  if (!options.skip && !motoProgram() && process.env.SQRX_REQUIRE_PRIVILEGED !== '1') {
    options.skip = 'moto_server is not installed (scripts/s3-tools.sh)'
  }
  test('push here, pull there, sync', options, async () => {
    const sb = await ctx.rt.create({ id: newId(), layers: ['000-base'] })
    await sb.destroy()
    const here = await Runtime.open({ dataDir: ctx.dataDir })
    const pushed = await here.pushLayer('000-base')
    assert.ok(pushed.uploadedBytes > 0 && pushed.key.startsWith('layers/sha256/'), JSON.stringify(pushed))
    assert.equal((await here.pushLayer('000-base')).uploadedBytes, 0)
    const otherDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqrx-test-node-s3-'))
    try {
      const other = await Runtime.open({ dataDir: otherDir })
      const pulled = await other.pullLayer('000-base')
      assert.equal(pulled.digest, pushed.digest)
      assert.ok(pulled.downloadedBytes > 0)
      assert.deepEqual(await other.syncLayers(), { pushed: [], pulled: [] })
      await assert.rejects(other.pullLayer('999-nope'), (e) => e.code === 'NotFound' && /999-nope/.test(e.message))
    } finally {
      fs.rmSync(otherDir, { recursive: true, force: true })
    }
    const saved = process.env.SQRX_S3_BUCKET
    delete process.env.SQRX_S3_BUCKET
    try {
      const none = await Runtime.open({ dataDir: ctx.dataDir })
      await assert.rejects(none.pushLayer('000-base'), (e) => e.code === 'InvalidArgument' && /SQRX_S3_BUCKET/.test(e.message))
    } finally {
      process.env.SQRX_S3_BUCKET = saved
    }
  })

  test('background pushes and an ephemeral sandbox moving between data directories', options, async () => {
    process.env.SQRX_S3_AUTO_PUSH = '1'
    process.env.SQRX_EPHEMERAL = '1'
    const otherDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqrx-test-node-s3-'))
    try {
      const here = await Runtime.open({ dataDir: ctx.dataDir })
      const id = newId()
      const sb = await here.create({ id, layers: ['000-base'] })
      assert.equal((await sb.exec('echo from-node > /root/n')).exitCode, 0)
      const snap = await sb.snapshot('s1', true)
      assert.equal(snap.label, 's1')
      assert.equal((await sb.pushSnapshot('s1')).uploadedBytes, 0)
      const state = async (kind, name) =>
        (await here.uploads()).find((u) => u.kind === kind && u.name === name)?.state
      assert.equal(await state('snapshot', `${id}@s1`), 'pushed')
      const deadline = Date.now() + 60000
      while ((await state('layer', '000-base')) !== 'pushed') {
        assert.ok(Date.now() < deadline, JSON.stringify(await here.uploads()))
        await new Promise((r) => setTimeout(r, 200))
      }
      await sb.destroy() // ephemeral: saved into the bucket first
      const other = await Runtime.open({ dataDir: otherDir })
      const moved = await other.create({ id })
      try {
        assert.equal((await moved.exec('cat /root/n')).stdout.toString(), 'from-node\n')
      } finally {
        await moved.destroy({ save: false })
      }
    } finally {
      process.env.SQRX_S3_AUTO_PUSH = '0'
      delete process.env.SQRX_EPHEMERAL
      fs.rmSync(otherDir, { recursive: true, force: true })
    }
  })
})
