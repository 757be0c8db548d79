// Egress policy through the unmodified e2b JavaScript SDK: create with
// allowInternetAccess/network, getInfo, updateNetwork, bad input.
//
// Not picked up by `npm test` (it needs a test internet): tests/e2e's
// TestE2BJavaScriptNetwork builds one and runs this file with
//
//   SBX_URL=... SBX_API_KEY=... SBX_TEST_A=<address> SBX_TEST_B=<address> node --test network.spec.js
//
// where the test internet serves HTTP on A and B and resolves *.a.test to A.

import { describe, test, after } from 'node:test'
import assert from 'node:assert/strict'

import './env.js'

const { Sandbox, SandboxError } = await import('e2b')

const A = process.env.SBX_TEST_A
const B = process.env.SBX_TEST_B
if (!A || !B) throw new Error('network.spec.js: SBX_TEST_A and SBX_TEST_B must name the test internet addresses')

const TIMEOUT = 60_000
const sandboxes = []
after(async () => {
  for (const s of sandboxes) await s.kill().catch(() => {})
})

async function reach(sbx, url) {
  const res = await sbx.commands.run(`curl -sS -m 3 ${url} 2>&1; echo " exit=$?"`)
  return res.stdout.includes('INTERNET-OK') && res.stdout.includes(' exit=0')
}

describe('egress policy through the e2b SDK', () => {
  test('create with allowInternetAccess false and allowOut, then updateNetwork', { timeout: TIMEOUT }, async () => {
    const sbx = await Sandbox.create('base', { allowInternetAccess: false, network: { allowOut: [A] }, timeoutMs: 120_000 })
    sandboxes.push(sbx)
    assert.equal(await reach(sbx, `http://${A}/`), true, 'allowed address')
    assert.equal(await reach(sbx, `http://${B}/`), false, 'address not allowed')

    const info = await sbx.getInfo()
    assert.equal(info.allowInternetAccess, false)
    assert.deepEqual(info.network?.allowOut, [A])

    await sbx.updateNetwork({ allowOut: ['*.a.test'], denyOut: ['0.0.0.0/0'] })
    assert.equal(await reach(sbx, 'http://www.a.test/'), true, 'allowed domain')
    assert.equal(await reach(sbx, `http://${B}/`), false, 'address not allowed after the update')
    assert.equal(await reach(sbx, `--resolve www.b.test:80:${A} http://www.b.test/`), false, 'a name not allowed on an allowed address')

    // Omitting a field clears it: an empty update allows everything.
    await sbx.updateNetwork({})
    assert.equal(await reach(sbx, `http://${B}/`), true, 'after clearing the policy')
    const cleared = await sbx.getInfo()
    assert.equal(cleared.network?.allowOut, undefined)
    assert.equal(cleared.allowInternetAccess, undefined)

    await sbx.updateNetwork({ allowInternetAccess: false })
    assert.equal(await reach(sbx, `http://${A}/`), false, 'allowInternetAccess false')
  })

  test('bad entries are refused with 400', { timeout: TIMEOUT }, async () => {
    const sbx = await Sandbox.create('base', { timeoutMs: 120_000 })
    sandboxes.push(sbx)
    for (const bad of ['*', '10.0.0.0/33', 'example.com:70000']) {
      await assert.rejects(sbx.updateNetwork({ allowOut: [bad] }), (err) => {
        assert.ok(err instanceof SandboxError, `${bad}: ${err}`)
        assert.equal(err.statusCode, 400, `${bad}: ${err}`)
        return true
      })
      await assert.rejects(Sandbox.create('base', { network: { denyOut: [bad] } }), (err) => {
        assert.equal(err.statusCode, 400, `create with ${bad}: ${err}`)
        return true
      })
    }
  })
})
