// getMetrics driven by the unmodified e2b JavaScript SDK against sbx: the
// samples sbx serve takes from each sandbox's cgroup and disk show what the
// sandbox did. Run as the other suites (see e2b.test.js); sbx serve samples
// every --metrics-interval (5 s by default), so each check polls.

import { describe, test, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'

import { SBX_URL, SBX_API_KEY } from './env.js'

const { Sandbox, SandboxNotFoundError } = await import('e2b')

const RUN = randomUUID()
const TEST_TIMEOUT = 180_000
const MiB = 1 << 20

const owned = new Set()

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

/** Polls getMetrics until ok(metrics) holds, failing after withinMs. */
async function awaitMetrics(sbx, what, ok, withinMs = 45_000) {
  const deadline = Date.now() + withinMs
  for (;;) {
    const ms = await sbx.getMetrics()
    if (ok(ms)) return ms
    if (Date.now() > deadline) assert.fail(`${what} not seen in ${ms.length} samples: ${JSON.stringify(ms.slice(-5))}`)
    await new Promise((r) => setTimeout(r, 250))
  }
}

const last = (ms) => ms[ms.length - 1]

describe('getMetrics', { timeout: TEST_TIMEOUT }, () => {
  test('CPU, memory and disk follow what the sandbox does; the samples stay through a pause', async () => {
    const sbx = await Sandbox.create('base', { timeoutMs: 180_000, metadata: { suite: 'e2b-js-metrics', run: RUN } })
    owned.add(sbx)
    const first = last(await awaitMetrics(sbx, 'a first sample', (ms) => ms.length > 0))
    const info = await sbx.getInfo()
    assert.equal(first.cpuCount, info.cpuCount)
    assert.equal(first.memTotal, info.memoryMB * MiB)
    // The SDK's getInfo leaves diskSizeMB out; the API has it.
    const res = await fetch(`${SBX_URL}/sandboxes/${sbx.sandboxId}`, { headers: { 'X-API-Key': SBX_API_KEY } })
    const { diskSizeMB } = await res.json()
    assert.ok(diskSizeMB > 0)
    assert.equal(first.diskTotal, diskSizeMB * MiB)
    assert.ok(first.timestamp instanceof Date && !Number.isNaN(first.timestamp.getTime()))
    assert.ok(first.memUsed > 0)

    // A busy loop for two sampling intervals and a bit.
    await sbx.commands.run("timeout 12 sh -c 'while :; do :; done'; true", { timeoutMs: 30_000 })
    await awaitMetrics(sbx, 'CPU use of a busy loop', (ms) => ms.some((m) => m.cpuUsedPct > 0))

    const before = last(await sbx.getMetrics())
    await sbx.commands.run('head -c 48M /dev/zero > /dev/shm/fill')
    await awaitMetrics(sbx, 'memUsed grown by 40 MiB', (ms) => last(ms).memUsed >= before.memUsed + 40 * MiB)
    await sbx.commands.run('head -c 32M /dev/urandom > /tmp/blob && sync')
    await awaitMetrics(sbx, 'diskUsed grown by 30 MiB', (ms) => last(ms).diskUsed >= before.diskUsed + 30 * MiB)

    // The static form, with a range.
    const all = await Sandbox.getMetrics(sbx.sandboxId)
    assert.ok(all.length >= 3)
    // The SDK rounds start to the nearest second: half a second early
    // lands on or before the sample's own second.
    const mid = all[Math.floor(all.length / 2)].timestamp
    const since = await Sandbox.getMetrics(sbx.sandboxId, { start: new Date(mid.getTime() - 500) })
    assert.ok(since.length >= 1 && since.length < all.length, `${since.length} of ${all.length}`)

    await sbx.pause()
    const paused = await Sandbox.getMetrics(sbx.sandboxId)
    assert.ok(paused.length >= all.length, `${paused.length} samples after the pause, ${all.length} before`)
    assert.ok(paused.some((m) => m.cpuUsedPct > 0))

    // Killed: the record, and its samples, are gone.
    await Sandbox.kill(sbx.sandboxId)
    owned.delete(sbx)
    await assert.rejects(Sandbox.getMetrics(sbx.sandboxId), SandboxNotFoundError)
  })

  test('a reversed range is refused', async () => {
    const sbx = await Sandbox.create('base', { timeoutMs: 60_000, metadata: { suite: 'e2b-js-metrics', run: RUN } })
    owned.add(sbx)
    await assert.rejects(
      sbx.getMetrics({ start: new Date(Date.now()), end: new Date(Date.now() - 3_600_000) }),
      /start must not be after end/,
    )
    await assert.rejects(Sandbox.getMetrics('nosuchsandbox00000000'), SandboxNotFoundError)
  })
})
