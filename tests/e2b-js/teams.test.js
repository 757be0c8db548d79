// Team quotas driven by the unmodified e2b JavaScript SDK against sbx: the
// issue's done-when, a create past a team's quota of 2 concurrent
// sandboxes raises RateLimitError (429) naming the limit. The team and
// its key are made with the admin key (SBX_API_KEY) through sbx's team
// routes, as `sbx team create` and `sbx key create --team` do.

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'

import { SBX_URL, SBX_API_KEY } from './env.js'

const { Sandbox, RateLimitError } = await import('e2b')

const owned = []

after(async () => {
  for (const sbx of owned) {
    try {
      await sbx.kill({ requestTimeoutMs: 20_000 })
    } catch (err) {
      console.error(`cleanup: could not kill ${sbx.sandboxId}: ${err}`)
    }
  }
})

async function admin(method, path, body) {
  const res = await fetch(SBX_URL + path, {
    method,
    headers: { 'X-API-Key': SBX_API_KEY, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  })
  const text = await res.text()
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${text}`)
  return JSON.parse(text)
}

test('a create past a team quota of 2 raises RateLimitError', { timeout: 180_000 }, async () => {
  const team = await admin('POST', '/sbx/v1/teams', { name: `js-${randomUUID().slice(0, 8)}`, maxSandboxes: 2 })
  const { key } = await admin('POST', '/sbx/v1/keys', { name: 'js-quota', team: team.id })
  for (let i = 0; i < 2; i++) {
    owned.push(await Sandbox.create('base', { apiKey: key, timeoutMs: 120_000 }))
  }
  await assert.rejects(
    Sandbox.create('base', { apiKey: key, timeoutMs: 120_000 }),
    (err) => {
      assert.ok(err instanceof RateLimitError, `got ${err?.constructor?.name}: ${err}`)
      assert.match(err.message, /limit of 2 concurrent sandboxes \(max-sandboxes\)/)
      return true
    },
  )
  // The team's sandboxes are its own: the default team's key lists none.
  const mine = await Sandbox.list({ apiKey: key }).nextItems()
  assert.equal(mine.length, 2)
  const others = await Sandbox.list({ apiKey: SBX_API_KEY }).nextItems()
  for (const s of others) {
    assert.ok(!owned.some((o) => o.sandboxId === s.sandboxId), `the default team sees ${s.sandboxId}`)
  }
  // Killing one makes room again.
  await owned.pop().kill()
  owned.push(await Sandbox.create('base', { apiKey: key, timeoutMs: 120_000 }))
})
