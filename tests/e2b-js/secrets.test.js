// End-to-end test of sbx's secrets driven by the unmodified `e2b`
// JavaScript SDK: Secret.create, list, getInfo, exists, update, destroy,
// the write-only value, the name conflict and bad input, and a sandbox
// create whose network rules name secrets (Secret.fill) or workload
// tokens. What the rules do to traffic is egress.spec.js's (it needs a
// test internet).
//
//   SBX_URL=http://127.0.0.1:49982 SBX_API_KEY=e2b_... node --test secrets.test.js

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'

import './env.js'

const { Sandbox, Secret, SecretNotFoundError, InvalidArgumentError } = await import('e2b')

const RUN = randomUUID().slice(0, 8)
const names = []
const sandboxes = []

after(async () => {
  for (const sbx of sandboxes) await sbx.kill().catch(() => {})
  for (const n of names) await Secret.destroy(n).catch(() => {})
})

test('secrets: create, read back without the value, update, list, destroy', { timeout: 60_000 }, async () => {
  const name = `JS-${RUN}-Key`
  const value = `value-${randomUUID()}`
  const created = await Secret.create(name, value, { metadata: { owner: 'js' } })
  names.push(created.secretId)
  assert.match(created.secretId, /^sec_/)
  assert.equal(created.name, name.toLowerCase())
  assert.equal(created.version, 1)
  assert.deepEqual(created.metadata, { owner: 'js' })
  assert.ok(created.createdAt instanceof Date && !isNaN(created.createdAt))
  assert.ok(!JSON.stringify(created).includes(value))

  const byName = await Secret.getInfo(name.toLowerCase())
  assert.equal(byName.secretId, created.secretId)
  assert.ok(await Secret.exists(created.secretId))

  await assert.rejects(Secret.create(name.toUpperCase(), 'x'), (e) => !(e instanceof SecretNotFoundError) && /exists/.test(e.message))

  const updated = await Secret.update(created.secretId, 'new-value')
  assert.equal(updated.version, 2)
  assert.deepEqual(updated.metadata, { owner: 'js' })

  const seen = []
  const pages = Secret.list({ limit: 1 })
  while (pages.hasNext) seen.push(...(await pages.nextItems()))
  const mine = seen.filter((s) => s.secretId === created.secretId)
  assert.equal(mine.length, 1)
  assert.equal(mine[0].version, 2)
  assert.ok(!JSON.stringify(seen).includes(value) && !JSON.stringify(seen).includes('new-value'))

  assert.equal(await Secret.destroy(created.secretId), true)
  assert.equal(await Secret.destroy(created.secretId), false)
  assert.equal(await Secret.exists(created.secretId), false)
  await assert.rejects(Secret.getInfo(created.secretId), SecretNotFoundError)
  await assert.rejects(Secret.update(created.secretId, 'x'), SecretNotFoundError)
})

test('secrets: bad input is a 400', { timeout: 30_000 }, async () => {
  for (const bad of ['', 'has space', 'sec_reserved', 'x'.repeat(129)]) {
    await assert.rejects(Secret.create(bad, 'v'), (e) => !(e instanceof SecretNotFoundError), `name ${JSON.stringify(bad)}`)
  }
  await assert.rejects(Secret.create(`js-${RUN}-empty`, ''))
  assert.equal(Secret.fill('openai-key'), '${e2b.secrets.openai-key}')
  assert.throws(() => Secret.fill('a}b'), InvalidArgumentError)
})

test('secrets: a create whose rules name an unknown secret or an unregistered workload token is refused', { timeout: 60_000 }, async () => {
  const opts = (v) => ({ timeoutMs: 60_000, metadata: { suite: 'e2b-js', run: RUN }, network: { rules: { 'api.test': [{ transform: { headers: { Authorization: v } } }] } } })
  await assert.rejects(Sandbox.create('base', opts(Secret.fill(`js-${RUN}-missing`))), /not found/)
  // A placeholder written out (no transform callback, so the SDK cannot
  // check it) naming a token the create does not register in iam.tokens.
  await assert.rejects(Sandbox.create('base', opts('${e2b.identity.tokens.aws}')), /identity token "aws" is not registered/)

  const name = `js-${RUN}-ok`
  names.push((await Secret.create(name, 'v')).secretId)
  const sbx = await Sandbox.create('base', opts(`Bearer ${Secret.fill(name)}`))
  sandboxes.push(sbx)
  const info = await sbx.getInfo()
  assert.deepEqual(info.network?.rules?.['api.test']?.[0]?.transform?.headers, { Authorization: `Bearer ${Secret.fill(name)}` })
  const env = await sbx.commands.run('echo "$NODE_EXTRA_CA_CERTS"; grep -c BEGIN /etc/ssl/certs/sbx-egress-ca.pem')
  assert.equal(env.stdout, '/etc/ssl/certs/sbx-egress-ca.pem\n1\n')
})
