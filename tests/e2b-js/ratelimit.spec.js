// Rate limits through the unmodified e2b JavaScript SDK: a key that has
// used its burst of API calls gets RateLimitError.
//
// Not picked up by `npm test` (it needs a server with tiny limits, and
// exhausts its key): tests/e2e's TestRateLimit starts one, uses up the
// key's API calls, and runs this file with
//
//   SBX_URL=... SBX_API_KEY=... node --test ratelimit.spec.js

import { test } from 'node:test'
import assert from 'node:assert/strict'

import './env.js'

const { Sandbox, RateLimitError } = await import('e2b')

test('a key past its rate limit gets RateLimitError', async () => {
  await assert.rejects(
    Sandbox.list().nextItems(),
    (err) => {
      assert.ok(err instanceof RateLimitError, `want RateLimitError, got ${err?.name}: ${err?.message}`)
      return true
    },
  )
  await assert.rejects(
    Sandbox.create({ timeoutMs: 30_000 }),
    (err) => {
      assert.ok(err instanceof RateLimitError, `want RateLimitError, got ${err?.name}: ${err?.message}`)
      return true
    },
  )
})
