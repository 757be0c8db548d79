// Network rules with secrets through the unmodified `e2b` JavaScript SDK:
// a sandbox whose rules set Authorization from Secret.fill reaches an
// HTTPS upstream that receives the secret's value, over TLS that sbx's
// egress proxy terminates with the sandbox's own CA. Needs the test
// internet of tests/e2e (api.test:8443 with a certificate the server
// trusts through --egress-ca-file); run it through
// `go test ./tests/e2e -run TestE2BJavaScriptEgress`.

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'

import './env.js'

const { Sandbox, Secret } = await import('e2b')

const RUN = randomUUID().slice(0, 8)
const sandboxes = []
const secrets = []

after(async () => {
  for (const sbx of sandboxes) await sbx.kill().catch(() => {})
  for (const s of secrets) await Secret.destroy(s).catch(() => {})
})

test('egress: rules fill Secret.fill placeholders in on the way out', { timeout: 120_000 }, async () => {
  const name = `js-${RUN}-token`
  const value = `v-${randomUUID()}`
  secrets.push((await Secret.create(name, value)).secretId)
  const sbx = await Sandbox.create('base', {
    timeoutMs: 120_000,
    metadata: { suite: 'e2b-js', run: RUN },
    network: {
      rules: { 'api.test': [{ transform: { headers: { Authorization: `Bearer ${Secret.fill(name)}` } } }] },
      allowOut: ({ rules }) => [...rules.keys()],
      denyOut: ({ allTraffic }) => [allTraffic],
    },
  })
  sandboxes.push(sbx)
  const r = await sbx.commands.run('curl -sS -m 5 https://api.test:8443/echo')
  assert.match(r.stdout, /UPSTREAM-OK trusted/)
  assert.ok(r.stdout.includes(`auth=Bearer ${value}`), r.stdout)
  // Denied: everything but the rule's host.
  const denied = await sbx.commands.run('curl -sS -m 3 http://a.test/ 2>&1; echo " exit=$?"')
  assert.doesNotMatch(denied.stdout, /INTERNET-OK/)

  // A live update that drops the rules: the placeholder is no longer filled.
  await sbx.updateNetwork({ allowOut: ['api.test'], denyOut: ['0.0.0.0/0'] })
  const after = await sbx.commands.run(`curl -sS -k -m 5 -H 'Authorization: ${Secret.fill(name)}' https://api.test:8443/echo`)
  assert.ok(after.stdout.includes(`auth=${Secret.fill(name)}`), after.stdout)
})
