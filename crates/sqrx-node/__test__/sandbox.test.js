// The API against real sandboxes: create, exec, streams, files, snapshots, lifecycle.
'use strict'
const { describe, test } = require('node:test')
const assert = require('node:assert')
const { SqrxError } = require('..')
const { privileged, newId, useRuntime, sandbox, eventually } = require('./helpers')

describe('sandboxes', privileged(), () => {
  const ctx = useRuntime()

  test('exec: a string runs with sh -c, an array is argv', async (t) => {
    const sb = await sandbox(t, ctx.rt)
    const r = await sb.exec('echo hi')
    assert.strictEqual(r.exitCode, 0)
    assert.ok(Buffer.isBuffer(r.stdout))
    assert.deepStrictEqual(r.stdout, Buffer.from('hi\n'))
    assert.strictEqual(r.text, 'hi\n')
    assert.strictEqual(r.timedOut, false)
    assert.strictEqual(r.oomKilled, false)
    assert.ok(r.durationMs >= 0 && r.started instanceof Date)
    const r2 = await sb.exec(['sh', '-c', 'echo out; echo err >&2; exit 7'])
    assert.strictEqual(r2.exitCode, 7)
    assert.strictEqual(r2.stderrText, 'err\n')
    assert.strictEqual((await sb.exec(['echo', 'a;', 'b'])).text, 'a; b\n')
  })

  test('exec as a user; setuid sandboxes', async (t) => {
    const sb = await sandbox(t, ctx.rt)
    const r = await sb.exec('id -u; pwd; echo $HOME', { user: 'nobody' })
    assert.strictEqual(r.text, '65534\n/\n/nonexistent\n')
    await assert.rejects(sb.exec('true', { user: 'mallory' }), (e) => e instanceof SqrxError && e.code === 'NotFound')
    assert.match((await sb.exec('grep NoNewPrivs /proc/self/status')).text, /NoNewPrivs:\t1/)
    const suid = await sandbox(t, ctx.rt, { setuid: true })
    assert.match((await suid.exec('grep NoNewPrivs /proc/self/status')).text, /NoNewPrivs:\t0/)
  })

  test('exec options: env, workdir, stdin, timeoutMs', async (t) => {
    const sb = await sandbox(t, ctx.rt)
    const r = await sb.exec('echo $FOO; pwd; cat', { env: { FOO: 'bar' }, workdir: '/tmp', stdin: Buffer.from('in') })
    assert.strictEqual(r.text, 'bar\n/tmp\nin')
    assert.strictEqual((await sb.exec('cat', { stdin: 'text' })).text, 'text')
    const slow = await sb.exec('sleep 30 & sleep 30', { timeoutMs: 500 })
    assert.strictEqual(slow.timedOut, true)
    assert.strictEqual(slow.signal, 9)
    assert.ok(!(await sb.exec('ps -o comm')).text.includes('sleep'))
  })

  test('execStream: async iteration of stdout, stderr, then exit', async (t) => {
    const sb = await sandbox(t, ctx.rt)
    const events = []
    for await (const ev of sb.execStream(['sh', '-c', 'echo a; sleep 0.1; echo b >&2; exit 3'])) {
      events.push(ev)
    }
    assert.deepStrictEqual(events.map((e) => e.kind), ['stdout', 'stderr', 'exit'])
    assert.strictEqual(events[0].data.toString(), 'a\n')
    assert.strictEqual(events[1].data.toString(), 'b\n')
    assert.strictEqual(events[2].result.exitCode, 3)
  })

  test('leaving an execStream loop early stops the exec', async (t) => {
    const sb = await sandbox(t, ctx.rt)
    for await (const ev of sb.execStream('echo started; exec sleep 1000')) {
      assert.strictEqual(ev.data.toString(), 'started\n')
      break
    }
    assert.ok(await eventually(async () => !(await sb.exec('ps -o comm')).text.includes('sleep')))
  })

  test('files: write, read, list, stat, mkdir, remove', async (t) => {
    const sb = await sandbox(t, ctx.rt)
    await sb.files.write('/data/a.txt', Buffer.from('x'))
    assert.deepStrictEqual(await sb.files.read('/data/a.txt'), Buffer.from('x'))
    await sb.files.write('/data/b.sh', '#!/bin/sh\necho from b\n', 0o755)
    const list = await sb.files.list('/data')
    assert.deepStrictEqual(list.map((f) => [f.name, f.kind]), [['a.txt', 'file'], ['b.sh', 'file']])
    const st = await sb.files.stat('/data/b.sh')
    assert.strictEqual(st.mode, 0o755)
    assert.ok(st.mtime instanceof Date)
    assert.strictEqual((await sb.exec('/data/b.sh')).text, 'from b\n')
    await sb.files.mkdir('/data/x/y')
    await sb.files.remove('/data/x', true)
    await assert.rejects(sb.files.stat('/data/x'), (e) => e instanceof SqrxError && e.code === 'NotFound')
  })

  test('list, get, info, logs, spawn', async (t) => {
    const sb = await sandbox(t, ctx.rt)
    assert.ok((await ctx.rt.list()).map((s) => s.id).includes(sb.id))
    const again = await ctx.rt.get(sb.id)
    const info = again.info()
    assert.strictEqual(info.status, 'running')
    assert.deepStrictEqual(info.layers, ['000-base'])
    assert.strictEqual(info.memoryMb, 256)
    await sb.exec('echo logged')
    const logs = await sb.logs()
    assert.strictEqual(logs.at(-1).command, 'echo logged')
    const p = await sb.spawn('sleep 1000')
    assert.ok((await sb.exec('ps -o pid')).text.includes(String(p.pid)))
    await p.kill(9)
    assert.deepStrictEqual(await p.wait(), { signal: 9 })
    assert.ok((await ctx.rt.layers()).includes('000-base'))
  })

  test('snapshot and restore', async (t) => {
    const sb = await sandbox(t, ctx.rt)
    await sb.files.write('/data/state.txt', 'one')
    const snap = await sb.snapshot('s1')
    assert.strictEqual(snap.label, 's1')
    await sb.files.write('/data/state.txt', 'two')
    assert.deepStrictEqual((await sb.snapshots()).map((s) => s.label), ['s1'])
    await sb.restore('s1')
    assert.strictEqual((await sb.files.read('/data/state.txt')).toString(), 'one')
    await assert.rejects(sb.restore('nope'), { code: 'NotFound' })
  })

  test('cloneSandbox copies the files', async (t) => {
    const sb = await sandbox(t, ctx.rt)
    await sb.files.write('/data/origin.txt', 'source')
    const clone = await ctx.rt.cloneSandbox(sb.id, newId())
    t.after(() => clone.destroy())
    assert.strictEqual((await clone.files.read('/data/origin.txt')).toString(), 'source')
  })

  test('pause and resume', async (t) => {
    const sb = await sandbox(t, ctx.rt)
    await sb.pause()
    assert.strictEqual(sb.info().status, 'paused')
    await assert.rejects(sb.exec('true'), { name: 'SqrxError', code: 'Conflict' })
    await sb.resume()
    assert.strictEqual((await sb.exec('echo back')).text, 'back\n')
  })

  test('Symbol.asyncDispose destroys; destroy twice is fine', async () => {
    const id = newId()
    const sb = await ctx.rt.create({ id })
    await sb.exec('true')
    await sb[Symbol.asyncDispose]()
    await sb.destroy()
    await assert.rejects(ctx.rt.get(id), (e) => e instanceof SqrxError && e.code === 'NotFound')
    await assert.rejects(sb.exec('true'), { code: 'NotFound' })
  })
})
