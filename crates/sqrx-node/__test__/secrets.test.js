// Secrets from Node: `secrets` at create, `setSecret` (rotation keeps the placeholder),
// `removeSecret`, `secrets()` and the runtime's `secrets.json` with `reloadSecrets`; values
// never come back, bad secrets reject with InvalidArgument naming the secret. The traffic side
// (substitution, refusals, every client) is tested in the core (crates/sqrx-core/tests/it/secrets.rs).
'use strict'
const { describe, test } = require('node:test')
const assert = require('node:assert')
const fs = require('node:fs')
const path = require('node:path')
const { SqrxError } = require('..')
const { privileged, newId, sandbox, useNetRuntime } = require('./helpers')

const VALUE = 'sk-node-value-3d9f17'

const invalid = (needle) => (e) => {
  assert.ok(e instanceof SqrxError, `not a SqrxError: ${e}`)
  assert.strictEqual(e.code, 'InvalidArgument', e.message)
  assert.ok(e.message.includes(needle), `${e.message} lacks ${needle}`)
  assert.ok(!e.message.includes(VALUE), `${e.message} holds the value`)
  return true
}

describe('secrets', privileged(), () => {
  const ctx = useNetRuntime('nodesec')

  test('placeholders inside, never values; rotation keeps the placeholder', async (t) => {
    const sb = await sandbox(t, ctx.rt, {
      network: 'all',
      secrets: { API_KEY: { value: VALUE, allowedHosts: ['api.example.com'] } },
    })
    const shown = sb.secrets()
    assert.deepStrictEqual(shown.map((s) => s.name), ['API_KEY'])
    assert.strictEqual(shown[0].source, 'sandbox')
    const placeholder = shown[0].placeholder
    assert.ok(placeholder.startsWith('sqrx-secret-'), placeholder)
    assert.ok(!JSON.stringify(shown).includes(VALUE))
    assert.ok(!JSON.stringify(sb.info()).includes(VALUE))
    assert.strictEqual((await sb.exec('printf %s "$API_KEY"')).stdout.toString(), placeholder)
    const env = (await sb.exec('env')).stdout.toString()
    assert.ok(!env.includes(VALUE))
    assert.ok(env.includes('NODE_EXTRA_CA_CERTS=/etc/sqrx/egress-ca.crt'), env)

    await sb.setSecret('API_KEY', { value: 'sk-rotated', allowedHosts: ['api.example.com'], allowBody: true })
    assert.strictEqual(sb.secrets()[0].placeholder, placeholder)
    assert.strictEqual(sb.secrets()[0].allowBody, true)
    await sb.setSecret('OTHER', { value: 'sk-other', allowedHosts: ['*.example.org'], placeholder: 'other-placeholder' })
    assert.strictEqual((await sb.exec('printf %s "$OTHER"')).stdout.toString(), 'other-placeholder')
    assert.strictEqual(await sb.removeSecret('OTHER'), true)
    assert.strictEqual(await sb.removeSecret('OTHER'), false)
  })

  test('bad secrets reject with InvalidArgument naming the secret', async (t) => {
    await assert.rejects(
      ctx.rt.create({ id: newId(), network: 'all', secrets: { API_KEY: { value: VALUE, allowedHosts: [] } } }),
      invalid('API_KEY'),
    )
    await assert.rejects(
      ctx.rt.create({ id: newId(), secrets: { K: { value: VALUE, allowedHosts: ['a.com'] } } }),
      invalid('network'),
    )
    const sb = await sandbox(t, ctx.rt, { network: 'all' })
    await assert.rejects(sb.setSecret('1BAD', { value: VALUE, allowedHosts: ['a.com'] }), invalid('1BAD'))
  })

  test("the runtime's secrets.json is read again on reloadSecrets", async () => {
    assert.deepStrictEqual(ctx.rt.secrets(), [])
    fs.writeFileSync(
      path.join(ctx.dataDir, 'secrets.json'),
      JSON.stringify({ secrets: { RT: { value: VALUE, allowed_hosts: ['a.example.com'] } } }),
    )
    assert.strictEqual(await ctx.rt.reloadSecrets(), 1)
    const shown = ctx.rt.secrets()
    assert.strictEqual(shown[0].name, 'RT')
    assert.strictEqual(shown[0].source, 'runtime')
    assert.ok(!JSON.stringify(shown).includes(VALUE))
    fs.writeFileSync(path.join(ctx.dataDir, 'secrets.json'), '{"secrets": {"RT": {"value": "x"}}}')
    await assert.rejects(ctx.rt.reloadSecrets(), invalid('secrets.json'))
    assert.strictEqual(ctx.rt.secrets()[0].name, 'RT')
  })
})
