// Pause, resume (connect), snapshots and forks driven by the unmodified e2b
// JavaScript SDK against sbx. Run as the other suites (see e2b.test.js).

import { describe, test, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'

import { SBX_URL, SBX_API_KEY } from './env.js'

const { Sandbox, SandboxError } = await import('e2b')

const RUN = randomUUID()
const TEST_TIMEOUT = 120_000
const SANDBOX_TIMEOUT_MS = 120_000

/** Sandboxes created by the current test; killed after it, pass or fail. */
const owned = new Set()

async function create(template = 'base', opts = {}) {
  const sbx = await Sandbox.create(template, {
    timeoutMs: SANDBOX_TIMEOUT_MS,
    ...opts,
    metadata: { suite: 'e2b-js-lifecycle', run: RUN },
  })
  owned.add(sbx)
  return sbx
}

afterEach(async () => {
  for (const sbx of owned) {
    try {
      await sbx.kill({ requestTimeoutMs: 20_000 })
    } catch (err) {
      console.error(`cleanup: could not kill ${sbx.sandboxId}: ${err}`)
    }
  }
  owned.clear()
})

/** Polls getInfo until the sandbox is in state, failing after withinMs. */
async function awaitState(id, state, withinMs = 60_000) {
  const deadline = Date.now() + withinMs
  for (;;) {
    const info = await Sandbox.getInfo(id)
    if (info.state === state) return info
    if (Date.now() > deadline) assert.fail(`sandbox ${id} still ${info.state} after ${withinMs} ms, want ${state}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** A raw control-plane request, for routes the SDK has no method for. */
async function api(method, path, body) {
  const res = await fetch(SBX_URL + path, {
    method,
    headers: { 'X-API-Key': SBX_API_KEY, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  return { status: res.status, body: await res.json().catch(() => null) }
}

// A process holding a counter in memory, writing "pid count" 20 times a second.
const COUNTER = `setsid nohup python3 -c '
import os, time
n = 0
while True:
    n += 1
    open("/tmp/c.tmp", "w").write("%d %d" % (os.getpid(), n))
    os.rename("/tmp/c.tmp", "/tmp/c")
    time.sleep(0.05)
' >/dev/null 2>&1 &`

async function counter(sbx) {
  for (let i = 0; i < 200; i++) {
    const [pid, n] = (await sbx.commands.run('cat /tmp/c 2>/dev/null || true')).stdout.split(' ').map(Number)
    if (pid && n) return { pid, n }
    await new Promise((r) => setTimeout(r, 50))
  }
  assert.fail('the counter never wrote its file')
}

describe('lifecycle through the e2b SDK', () => {
  test('pause, connect (resumes), run a command, kill', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create()
    await sbx.commands.run(COUNTER)
    const before = await counter(sbx)

    assert.equal(await sbx.pause(), true)
    // Pausing again: E2B answers 409, which the SDK reports as false.
    assert.equal(await sbx.pause(), false)
    assert.equal(await Sandbox.betaPause(sbx.sandboxId), false)
    const info = await sbx.getInfo()
    assert.equal(info.state, 'paused')
    assert.equal(await sbx.isRunning(), false)

    const paused = Sandbox.list({ query: { state: ['paused'], metadata: { run: RUN } } })
    const items = await paused.nextItems()
    assert.deepEqual(
      items.map((s) => s.sandboxId),
      [sbx.sandboxId],
    )

    const again = await Sandbox.connect(sbx.sandboxId, { timeoutMs: SANDBOX_TIMEOUT_MS })
    assert.equal((await again.getInfo()).state, 'running')
    const r = await again.commands.run('echo resumed')
    assert.equal(r.stdout, 'resumed\n')
    const after = await counter(again)
    assert.equal(after.pid, before.pid, 'the process continued')
    assert.ok(after.n >= before.n, `the count went on from ${before.n} (now ${after.n})`)

    // Resuming a running sandbox is refused with 409.
    const res = await api('POST', `/sandboxes/${sbx.sandboxId}/resume`, {})
    assert.equal(res.status, 409)
    assert.equal(res.body.code, 409)
    assert.match(res.body.message, /already running/)

    assert.equal(await again.kill(), true)
    owned.delete(sbx)
    assert.equal(await Sandbox.kill(sbx.sandboxId), false)
  })

  test('the resume route resumes a paused sandbox', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create()
    await sbx.pause()
    const res = await api('POST', `/sandboxes/${sbx.sandboxId}/resume`, { timeout: 60 })
    assert.equal(res.status, 201)
    assert.equal(res.body.sandboxID, sbx.sandboxId)
    assert.equal((await sbx.commands.run('echo ok')).stdout, 'ok\n')
  })

  test('autoPause: the timeout pauses instead of killing', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create('base', { timeoutMs: 3_000, lifecycle: { onTimeout: 'pause' } })
    await sbx.commands.run('echo kept > /tmp/kept')
    const info = await awaitState(sbx.sandboxId, 'paused')
    assert.equal(info.lifecycle.onTimeout, 'pause')
    const back = await Sandbox.connect(sbx.sandboxId, { timeoutMs: SANDBOX_TIMEOUT_MS })
    assert.equal((await back.commands.run('cat /tmp/kept')).stdout, 'kept\n')
  })

  test('snapshots: create, list, create a sandbox from one, delete', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create()
    await sbx.files.write('/home/user/state.json', '{"step":1}')
    const name = `js-${RUN.slice(0, 8)}`
    const snap = await sbx.createSnapshot({ name })
    assert.ok(snap.snapshotId)
    assert.deepEqual(snap.names, [name])
    await sbx.files.write('/home/user/later.txt', 'after the snapshot')

    const listed = []
    const pager = sbx.listSnapshots()
    while (pager.hasNext) listed.push(...(await pager.nextItems()))
    assert.deepEqual(
      listed.map((s) => s.snapshotId),
      [snap.snapshotId],
    )

    const copy = await create(snap.snapshotId)
    assert.equal(await copy.files.read('/home/user/state.json'), '{"step":1}')
    assert.equal(await copy.files.exists('/home/user/later.txt'), false)

    // In use: refused (409).
    await assert.rejects(Sandbox.deleteSnapshot(snap.snapshotId), (err) => err instanceof SandboxError && err.statusCode === 409)
    await copy.kill()
    owned.delete(copy)
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId), true)
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId), false)
  })

  test('fork: copies continue from the same files and diverge', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create()
    await sbx.files.write('/home/user/shared.txt', 'from the source')
    const forks = await sbx.fork({ count: 2, timeoutMs: SANDBOX_TIMEOUT_MS })
    assert.equal(forks.length, 2)
    for (const [i, f] of forks.entries()) {
      assert.ok(f instanceof Sandbox, `fork ${i}: ${f}`)
      owned.add(f)
      assert.equal(await f.files.read('/home/user/shared.txt'), 'from the source')
      await f.files.write('/home/user/who', `fork ${i}`)
    }
    for (const [i, f] of forks.entries()) assert.equal(await f.files.read('/home/user/who'), `fork ${i}`)
    assert.equal(await sbx.files.exists('/home/user/who'), false)

    // Bad counts are refused before anything is made.
    await assert.rejects(sbx.fork({ count: 0 }), (err) => err instanceof SandboxError && err.statusCode === 400)
    await assert.rejects(sbx.fork({ count: 1000 }), (err) => err instanceof SandboxError && err.statusCode === 400)
  })
})
