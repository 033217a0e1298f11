// Network policies: validation (SqrxError code InvalidArgument with the reason), and the round
// trip of `network` / `setNetwork` / `info().network` on sandboxes whose links live in a network
// namespace this test creates (the runtime's `netNetns`), so no packet leaves the machine.
'use strict'
const { describe, test } = require('node:test')
const assert = require('node:assert')
const { execFileSync } = require('node:child_process')
const { SqrxError } = require('..')
const { privileged, newId, useRuntime, useNetRuntime, sandbox } = require('./helpers')

const invalid = (needle) => (e) => {
  assert.ok(e instanceof SqrxError, `not a SqrxError: ${e}`)
  assert.strictEqual(e.code, 'InvalidArgument', e.message)
  assert.ok(e.message.includes(needle), `${e.message} lacks ${needle}`)
  return true
}

const BAD = [
  ['some', "expected 'none', 'all'"],
  [42, 'got 42'],
  [['10.0.0.1/8'], 'bits set beyond the prefix length'],
  [{ allow: ['10.1.0.0/16'], deny: ['10.2.0.0/16:0'] }, 'port'],
  [{ allow: ['10.1.0.0/16'], permit: [] }, 'network policy'],
  [{ allow: '10.1.0.0/16' }, 'network policy'],
  [['[::1]:80'], 'IPv6'],
]

describe('network policies without a link', privileged(), () => {
  const ctx = useRuntime()

  test('bad policies are InvalidArgument with the reason', async (t) => {
    const sb = await sandbox(t, ctx.rt)
    for (const [policy, needle] of BAD) {
      await assert.rejects(ctx.rt.create({ id: newId(), network: policy }), invalid(needle))
      await assert.rejects(sb.setNetwork(policy), invalid(needle))
    }
    assert.strictEqual(sb.info().network, 'none')
  })

  test('the default is none, without a link', async (t) => {
    const sb = await sandbox(t, ctx.rt)
    const info = sb.info()
    assert.strictEqual(info.network, 'none')
    assert.ok(info.address == null && info.gateway == null, JSON.stringify(info))
    assert.deepStrictEqual((await sb.exec('ls /sys/class/net')).stdout.toString().split(/\s+/).filter(Boolean), ['lo'])
  })
})

describe('network policies with links in a test namespace', privileged(), () => {
  const ctx = useNetRuntime('nodenet')
  const ns = ctx.ns

  test('create, setNetwork and info round trip', async (t) => {
    const sb = await sandbox(t, ctx.rt, { network: 'all' })
    const info = sb.info()
    assert.strictEqual(info.network, 'all')
    assert.ok(info.address && info.gateway && info.address !== info.gateway, JSON.stringify(info))
    // The host side of the link is in the test's namespace, not this machine's.
    const links = execFileSync('ip', ['-n', ns, '-o', 'link']).toString()
    assert.ok(/^\d+: sq/m.test(links), links)
    await sb.setNetwork(['10.1.0.0/16', '10.2.0.1:443'])
    assert.deepStrictEqual(sb.info().network, { allow: ['10.1.0.0/16', '10.2.0.1:443'], deny: [] })
    assert.strictEqual(sb.info().address, info.address, 'the same link')
    await sb.setNetwork({ allow: ['10.0.0.0/8'], deny: ['10.9.0.0/16'] })
    assert.deepStrictEqual(sb.info().network, { allow: ['10.0.0.0/8'], deny: ['10.9.0.0/16'] })
    await sb.setNetwork('none')
    assert.strictEqual(sb.info().network, 'none')
    assert.strictEqual((await ctx.rt.get(sb.id)).info().network, 'none')

    const listed = await sandbox(t, ctx.rt, { network: { allow: ['10.1.0.0/16'] } })
    assert.deepStrictEqual(listed.info().network, { allow: ['10.1.0.0/16'], deny: [] })
    const inside = (await listed.exec('ls /sys/class/net')).stdout.toString()
    assert.ok(inside.split(/\s+/).includes('eth0'), inside)

    const late = await sandbox(t, ctx.rt)
    assert.ok(late.info().address == null)
    await late.setNetwork('all')
    assert.strictEqual(late.info().network, 'all')
    assert.ok(late.info().address)
  })
})
