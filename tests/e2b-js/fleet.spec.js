// A fleet of sbx nodes driven by the unmodified `e2b` JavaScript SDK
// through one node (SBX_URL): creates land on several nodes, and commands,
// files, a PTY, a directory watch and the list work for every sandbox,
// whichever node holds it. tests/e2e/fleet_test.go starts the fleet and
// runs it:
//
//   SBX_URL=http://NODE1 SBX_API_KEY=e2b_... node --test fleet.spec.js
//
// It is not a *.test.js file: `npm test` runs against one server.

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'

import { SBX_URL, SBX_API_KEY } from './env.js'

const { Sandbox } = await import('e2b')

const RUN = randomUUID()
const created = []

after(async () => {
  await Promise.all(created.map((s) => s.kill().catch((err) => console.error(`cleanup: ${s.sandboxId}: ${err}`))))
})

test('a fleet serves the e2b SDK as one server', { timeout: 240_000 }, async () => {
  for (let i = 0; i < 6; i++) {
    created.push(await Sandbox.create('base', { timeoutMs: 300_000, metadata: { suite: 'fleet', run: RUN } }))
  }
  // GET /nodes counts each node's sandboxes: the six are spread.
  const res = await fetch(`${SBX_URL}/nodes`, { headers: { 'X-API-Key': SBX_API_KEY } })
  assert.equal(res.status, 200)
  const nodes = await res.json()
  const holding = nodes.filter((n) => n.sandboxCount > 0)
  console.log(`placement: ${nodes.map((n) => `${n.id} ${n.sandboxCount}`).join(', ')}`)
  // SBX_FLEET_SPREAD: the nodes the six must land on (a fleet placing
  // by the best of all its nodes spreads them over every one).
  const spread = Number(process.env.SBX_FLEET_SPREAD ?? 2)
  assert.ok(holding.length >= spread, `6 creates landed on ${holding.length} node(s), want ${spread}`)

  // The list through one node shows the fleet's.
  const listed = []
  const paginator = Sandbox.list({ query: { metadata: { run: RUN } } })
  while (paginator.hasNext) listed.push(...(await paginator.nextItems()))
  assert.deepEqual(listed.map((s) => s.sandboxId).sort(), created.map((s) => s.sandboxId).sort())

  for (const sbx of created) {
    const r = await sbx.commands.run(`echo hello-${sbx.sandboxId}`)
    assert.equal(r.stdout, `hello-${sbx.sandboxId}\n`)
    const body = `content of ${sbx.sandboxId}\n`.repeat(1000)
    await sbx.files.write('/home/user/fleet.txt', body)
    assert.equal(await sbx.files.read('/home/user/fleet.txt'), body)
    // Connecting by id, as another process would, through the same node.
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal((await again.commands.run('cat /home/user/fleet.txt | wc -l')).stdout.trim(), '1000')
  }

  // Streams: a PTY and a directory watch on every sandbox.
  const enc = new TextEncoder()
  for (const sbx of created) {
    let out = ''
    let seen
    const got = new Promise((resolve) => (seen = resolve))
    const pty = await sbx.pty.create({
      cols: 80,
      rows: 24,
      onData: (d) => {
        out += new TextDecoder().decode(d)
        if (out.includes('pty-42')) seen()
      },
    })
    await sbx.pty.sendInput(pty.pid, enc.encode('echo pty-$((6*7))\n'))
    await got
    await sbx.pty.kill(pty.pid)

    let fired
    const event = new Promise((resolve) => (fired = resolve))
    const handle = await sbx.files.watchDir('/home/user', (e) => {
      if (e.name === 'watched.txt') fired(e)
    })
    await sbx.files.write('/home/user/watched.txt', 'x')
    await event
    await handle.stop()
  }
})
