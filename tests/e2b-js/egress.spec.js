// Network rules with secrets through the unmodified `e2b` JavaScript SDK:
// a sandbox whose rules set Authorization from Secret.fill reaches an
// HTTPS upstream that receives the secret's value, over TLS that sbx's
// egress proxy terminates with the sandbox's own CA. Needs the test
// internet of tests/e2e (api.test:8443 with a certificate the server
// trusts through --egress-ca-file); run it through
// `go test ./tests/e2e -run TestE2BJavaScriptEgress`.

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID, createVerify, createPublicKey } from 'node:crypto'

import { SBX_URL } from './env.js'

const { Sandbox, Secret, InvalidArgumentError } = await import('e2b')

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

// Workload identity: a transform callback names a token of `iam.tokens`;
// sbx's egress mints a JWT-SVID in place of the placeholder. (The /echo
// upstream answers the header it got, so here the token passes through the
// sandbox; tests/e2e TestEgressIdentity checks the sandbox never sees it.)
// The token verifies against the keys sbx serves as an OIDC issuer.
test('egress: iam tokens in transform callbacks are minted at the egress', { timeout: 120_000 }, async () => {
  const transform = ({ iam }) => ({ headers: { Authorization: `Bearer ${iam.tokens.aws}` } })
  // The SDK itself refuses a name the create does not register.
  await assert.rejects(
    Sandbox.create('base', { network: { rules: { 'api.test': [{ transform }] } } }),
    (err) => err instanceof InvalidArgumentError,
  )
  const sbx = await Sandbox.create('base', {
    timeoutMs: 120_000,
    metadata: { suite: 'e2b-js', run: RUN },
    iam: { tokens: { aws: Secret.iamToken({ audience: 'sts.amazonaws.com', tokenType: 'JWT-SVID' }) } },
    network: { rules: { 'api.test': [{ transform }] } },
  })
  sandboxes.push(sbx)
  const r = await sbx.commands.run('curl -sS -m 5 https://api.test:8443/echo')
  const m = r.stdout.match(/auth=Bearer (\S+)/)
  assert.ok(m, r.stdout)
  const [h, p, s] = m[1].split('.')
  const header = JSON.parse(Buffer.from(h, 'base64url'))
  const claims = JSON.parse(Buffer.from(p, 'base64url'))
  assert.equal(header.alg, 'RS256')
  assert.equal(claims.sandbox_id, sbx.sandboxId)
  assert.equal(claims.aud, 'sts.amazonaws.com')
  assert.match(claims.sub, new RegExp(`^spiffe://[^/]+/team/[^/]+/sandbox/${sbx.sandboxId}$`))
  // As a relying party: the discovery document, then the keys.
  const disc = await (await fetch(new URL('/.well-known/openid-configuration', SBX_URL))).json()
  assert.equal(claims.iss, disc.issuer)
  const jwks = await (await fetch(new URL('/.well-known/jwks.json', SBX_URL))).json()
  const jwk = jwks.keys.find((k) => k.kid === header.kid)
  assert.ok(jwk, `no key ${header.kid} in ${JSON.stringify(jwks)}`)
  const ok = createVerify('RSA-SHA256').update(`${h}.${p}`).verify(createPublicKey({ key: jwk, format: 'jwk' }), Buffer.from(s, 'base64url'))
  assert.equal(ok, true, 'the token does not verify against the served key')

  // A live update naming a token the sandbox did not register is refused
  // by sbx (the SDK cannot check: the update carries no iam).
  await assert.rejects(
    sbx.updateNetwork({ rules: { 'api.test': [{ transform: ({ iam }) => ({ headers: { Authorization: iam.tokens.gcp } }) }] } }),
    /400: network\.rules: identity token "gcp" is not registered/,
  )
})
