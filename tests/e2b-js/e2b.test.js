// End-to-end test of sbx driven by the unmodified `e2b` JavaScript SDK.
//
// Run against a running sbx server:
//
//   SBX_URL=http://127.0.0.1:49982 SBX_API_KEY=e2b_... npm test
//
// SBX_URL serves both the E2B control-plane API and the envd (sandbox) API;
// the SDK picks the sandbox by the E2b-Sandbox-Id header it sends with every
// envd request when E2B_SANDBOX_URL is set.

import { describe, test, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'

// Environment (SBX_URL, SBX_API_KEY → E2B_*): set before the SDK loads.
import { SBX_URL, SBX_API_KEY } from './env.js'

const {
  Sandbox,
  SandboxError,
  SandboxNotFoundError,
  CommandExitError,
  AuthenticationError,
} = await import('e2b')

// ---------------------------------------------------------------------------
// Constants and helpers
// ---------------------------------------------------------------------------

const SUITE = 'e2b-js'
const RUN = randomUUID()
const TEMPLATE = 'base'
const SANDBOX_TIMEOUT_MS = 120_000
const TEST_TIMEOUT = 60_000
const HOOK_TIMEOUT = 60_000
// Upper bound for waiting on an event that should arrive promptly. This is a
// failure bound, not synchronisation: waits resolve as soon as the event comes.
const EVENT_TIMEOUT_MS = 20_000

/** Sandboxes created by the currently running test; killed in afterEach. */
const perTestSandboxes = new Set()
/** Command/PTY handles opened by the currently running test; closed in afterEach. */
const perTestHandles = new Set()

/** Create a sandbox owned by the current test (killed after it, pass or fail). */
async function createOwnedSandbox(opts = {}) {
  const { metadata, ...rest } = opts
  const sbx = await Sandbox.create(TEMPLATE, {
    timeoutMs: SANDBOX_TIMEOUT_MS,
    ...rest,
    metadata: { suite: SUITE, run: RUN, ...metadata },
  })
  perTestSandboxes.add(sbx)
  return sbx
}

function trackHandle(handle) {
  perTestHandles.add(handle)
  return handle
}

async function killQuietly(sbx) {
  try {
    await sbx.kill({ requestTimeoutMs: 20_000 })
  } catch (err) {
    console.error(`cleanup: could not kill sandbox ${sbx.sandboxId}: ${err}`)
  }
}

// One sandbox shared by the tests that do not kill it. Created lazily by
// whichever test needs it first, so any single test can run on its own
// (--test-name-pattern); killed in the top-level after hook.
let sharedPromise
function shared() {
  sharedPromise ??= Sandbox.create(TEMPLATE, {
    timeoutMs: SANDBOX_TIMEOUT_MS,
    metadata: { suite: SUITE, run: RUN, role: 'shared' },
    envs: { FOO: 'bar' },
  })
  return sharedPromise
}

/**
 * Accumulates streamed output (string or Uint8Array chunks) and lets a test
 * await the moment a given text has arrived.
 */
class Output {
  constructor(label) {
    this.label = label
    this.text = ''
    this.chunks = []
    this.decoder = new TextDecoder()
    this.waiters = new Set()
    this.push = this.push.bind(this)
  }

  push(chunk) {
    const s = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true })
    this.chunks.push(s)
    this.text += s
    for (const w of this.waiters) {
      if (w.test(this.text)) {
        this.waiters.delete(w)
        w.resolve(this.text)
      }
    }
  }

  /** Resolves once `needle` (string or RegExp) occurs in the accumulated output. */
  waitFor(needle, timeoutMs = EVENT_TIMEOUT_MS) {
    const test = typeof needle === 'string' ? (t) => t.includes(needle) : (t) => needle.test(t)
    if (test(this.text)) return Promise.resolve(this.text)
    return new Promise((resolve, reject) => {
      const w = {
        test,
        resolve: (v) => {
          clearTimeout(timer)
          resolve(v)
        },
      }
      const timer = setTimeout(() => {
        this.waiters.delete(w)
        reject(
          new Error(
            `${this.label}: ${needle} did not arrive within ${timeoutMs} ms; got so far: ${JSON.stringify(this.text)}`,
          ),
        )
      }, timeoutMs)
      this.waiters.add(w)
    })
  }
}

/** All pages of a Sandbox.list paginator. */
async function listAll(opts) {
  const paginator = Sandbox.list(opts)
  const items = []
  while (paginator.hasNext) items.push(...(await paginator.nextItems()))
  return items
}

/** Asserts that `promise` rejects with an instance of `cls`; returns the error. */
async function rejectsWith(promise, cls, what) {
  let caught
  await assert.rejects(promise, (err) => {
    caught = err
    return true
  }, `${what}: expected a rejection`)
  assert.ok(
    caught instanceof cls,
    `${what}: expected ${cls.name}, got ${caught?.constructor?.name}: ${caught?.message}`,
  )
  return caught
}

/** SIGKILL as the SDK reports it: envd's exit code -1 (Go's convention) or the shell's 128+9. */
function assertKilledBySignal(err, what) {
  assert.ok(
    err instanceof CommandExitError,
    `${what}: expected CommandExitError, got ${err?.constructor?.name}: ${err?.message}`,
  )
  assert.ok(
    err.exitCode === -1 || err.exitCode === 137,
    `${what}: expected exit code -1 or 137 for SIGKILL, got ${err.exitCode} (error: ${err.error})`,
  )
}

async function captureRejection(promise) {
  try {
    const value = await promise
    return { value }
  } catch (err) {
    return { err }
  }
}

// ---------------------------------------------------------------------------
// Hooks: clean up everything, even when assertions fail.
// ---------------------------------------------------------------------------

afterEach(async () => {
  for (const h of perTestHandles) {
    try {
      if (h.exitCode === undefined) await h.kill()
    } catch {
      // the process or its sandbox is gone already
    }
    try {
      await h.disconnect()
    } catch {
      // ignore
    }
  }
  perTestHandles.clear()
  const owned = [...perTestSandboxes]
  perTestSandboxes.clear()
  await Promise.all(owned.map(killQuietly))
}, { timeout: HOOK_TIMEOUT })

after(async () => {
  if (!sharedPromise) return
  const res = await captureRejection(sharedPromise)
  if (res.value) await killQuietly(res.value)
}, { timeout: HOOK_TIMEOUT })

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

describe('sbx through the e2b JS SDK', () => {
  test('1. Sandbox.create returns a running sandbox', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    assert.ok(sbx instanceof Sandbox)
    assert.equal(typeof sbx.sandboxId, 'string')
    assert.notEqual(sbx.sandboxId, '', 'sandboxId must be non-empty')
    assert.equal(await sbx.isRunning(), true)
  })

  describe('2. commands.run', () => {
    test('captures stdout, stderr and exit code 0', { timeout: TEST_TIMEOUT }, async () => {
      const sbx = await shared()
      const res = await sbx.commands.run('echo hello && echo err >&2')
      assert.equal(res.stdout, 'hello\n')
      assert.equal(res.stderr, 'err\n')
      assert.equal(res.exitCode, 0)
    })

    test('a non-zero exit throws CommandExitError carrying the exit code', { timeout: TEST_TIMEOUT }, async () => {
      const sbx = await shared()
      const err = await rejectsWith(sbx.commands.run('exit 3'), CommandExitError, "run('exit 3')")
      assert.equal(err.exitCode, 3)

      const err2 = await rejectsWith(
        sbx.commands.run('echo partial; echo oops >&2; exit 3'),
        CommandExitError,
        'run with output then exit 3',
      )
      assert.equal(err2.exitCode, 3)
      assert.equal(err2.stdout, 'partial\n')
      assert.equal(err2.stderr, 'oops\n')
    })

    test('envs and cwd options apply to that command only', { timeout: TEST_TIMEOUT }, async () => {
      const sbx = await shared()
      const res = await sbx.commands.run('echo "$GREETING" && pwd', {
        envs: { GREETING: 'hi there' },
        cwd: '/tmp',
      })
      assert.equal(res.stdout, 'hi there\n/tmp\n')

      const plain = await sbx.commands.run('echo "${GREETING-unset}" && pwd')
      assert.equal(plain.stdout, 'unset\n/home/user\n', 'envs/cwd must not leak; default cwd is the home of user')
    })

    test("runs as 'user' by default and as 'root' on request", { timeout: TEST_TIMEOUT }, async () => {
      const sbx = await shared()
      assert.equal((await sbx.commands.run('whoami')).stdout, 'user\n')
      assert.equal((await sbx.commands.run('echo $HOME')).stdout, '/home/user\n')
      const root = await sbx.commands.run('whoami && id -u', { user: 'root' })
      assert.equal(root.stdout, 'root\n0\n')
    })

    test('sandbox envs given at create are visible and per-command envs override them', { timeout: TEST_TIMEOUT }, async () => {
      const sbx = await shared()
      assert.equal((await sbx.commands.run('echo "$FOO"')).stdout, 'bar\n')
      assert.equal((await sbx.commands.run('echo "$FOO"', { user: 'root' })).stdout, 'bar\n')
      assert.equal((await sbx.commands.run('echo "$FOO"', { envs: { FOO: 'baz' } })).stdout, 'baz\n')
    })

    test('onStdout/onStderr receive output while the command is still running', { timeout: TEST_TIMEOUT }, async () => {
      const sbx = await shared()
      const gate = `/tmp/e2b-js-gate-${randomUUID()}`
      const out = new Output('stdout')
      const err = new Output('stderr')
      // The command prints "first", then blocks until the test opens the gate,
      // so "first" can only be seen by the test if it was streamed.
      const handle = trackHandle(
        await sbx.commands.run(
          `echo first; echo warn >&2; while [ ! -e ${gate} ]; do sleep 0.05; done; echo second`,
          { background: true, onStdout: out.push, onStderr: err.push },
        ),
      )
      await out.waitFor('first\n')
      await err.waitFor('warn\n')
      assert.equal(handle.exitCode, undefined, 'command must still be running while gated')
      await sbx.commands.run(`touch ${gate}`)
      const res = await handle.wait()
      assert.equal(res.exitCode, 0)
      assert.equal(res.stdout, 'first\nsecond\n')
      assert.equal(res.stderr, 'warn\n')
      assert.equal(out.text, 'first\nsecond\n', 'onStdout chunks concatenate to stdout')
      assert.equal(err.text, 'warn\n', 'onStderr chunks concatenate to stderr')
      assert.ok(out.chunks.length >= 2, `expected at least 2 stdout chunks, got ${JSON.stringify(out.chunks)}`)

      // Plain foreground run with callbacks, as in the SDK docs.
      const fg = new Output('fg stdout')
      const fgRes = await sbx.commands.run('for i in 1 2 3; do echo line $i; done', { onStdout: fg.push })
      assert.equal(fgRes.stdout, 'line 1\nline 2\nline 3\n')
      assert.equal(fg.text, fgRes.stdout)
    })
  })

  describe('3. background commands', () => {
    test('connect from the same and from a second instance receives later output; wait() gives exit code 0', { timeout: TEST_TIMEOUT }, async () => {
      const sbx = await shared()
      const gate = `/tmp/e2b-js-gate-${randomUUID()}`
      // Ticks start only once the gate exists, i.e. after both observers are
      // connected, so every observer must see all of them.
      const cmd = `while [ ! -e ${gate} ]; do sleep 0.05; done; for i in 1 2 3; do echo tick $i; sleep 0.2; done`
      const handle = trackHandle(await sbx.commands.run(cmd, { background: true }))
      assert.equal(typeof handle.pid, 'number')
      assert.ok(handle.pid > 0, `pid must be positive, got ${handle.pid}`)

      const sameOut = new Output('connect (same instance)')
      const same = trackHandle(await sbx.commands.connect(handle.pid, { onStdout: sameOut.push }))
      assert.equal(same.pid, handle.pid)

      const other = await Sandbox.connect(sbx.sandboxId)
      assert.equal(other.sandboxId, sbx.sandboxId)
      const otherOut = new Output('connect (second instance)')
      const viaOther = trackHandle(await other.commands.connect(handle.pid, { onStdout: otherOut.push }))
      assert.equal(viaOther.pid, handle.pid)

      await sbx.commands.run(`touch ${gate}`)

      await Promise.all([sameOut.waitFor('tick 3\n'), otherOut.waitFor('tick 3\n')])
      const [r0, r1, r2] = await Promise.all([handle.wait(), same.wait(), viaOther.wait()])
      for (const [name, r] of [['run handle', r0], ['connect (same)', r1], ['connect (other)', r2]]) {
        assert.equal(r.exitCode, 0, `${name}: exit code`)
        assert.equal(r.stdout, 'tick 1\ntick 2\ntick 3\n', `${name}: stdout`)
      }
      assert.equal(sameOut.text, 'tick 1\ntick 2\ntick 3\n')
      assert.equal(otherOut.text, 'tick 1\ntick 2\ntick 3\n')
    })

    test('commands.list shows a background sleep; commands.kill ends it with SIGKILL', { timeout: TEST_TIMEOUT }, async () => {
      const sbx = await shared()
      const handle = trackHandle(await sbx.commands.run('sleep 30', { background: true }))
      assert.ok(handle.pid > 0)

      const procs = await sbx.commands.list()
      const entry = procs.find((p) => p.pid === handle.pid)
      assert.ok(entry, `pid ${handle.pid} not in commands.list(): ${JSON.stringify(procs)}`)
      assert.equal(entry.cmd, '/bin/bash')
      assert.deepEqual(entry.args, ['-l', '-c', 'sleep 30'])

      assert.equal(await sbx.commands.kill(handle.pid), true)
      const { value, err } = await captureRejection(handle.wait())
      assert.equal(value, undefined, `wait() must reject after kill, resolved with ${JSON.stringify(value)}`)
      assertKilledBySignal(err, 'wait() after commands.kill')
      assert.equal(handle.exitCode, err.exitCode)
    })
  })

  test('4. stdin: sendStdin reaches the process and closeStdin ends it', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const out = new Output('cat stdout')
    const handle = trackHandle(await sbx.commands.run('cat', { background: true, stdin: true, onStdout: out.push }))
    await sbx.commands.sendStdin(handle.pid, 'ping\n')
    await out.waitFor('ping\n')
    assert.equal(handle.exitCode, undefined, 'cat must keep running until stdin is closed')
    await sbx.commands.closeStdin(handle.pid)
    const res = await handle.wait()
    assert.equal(res.exitCode, 0)
    assert.equal(res.stdout, 'ping\n')
  })

  test('5. PTY: input, resize and kill', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const out = new Output('pty')
    const pty = trackHandle(await sbx.pty.create({ cols: 80, rows: 24, onData: out.push }))
    assert.ok(pty.pid > 0)
    const enc = new TextEncoder()

    // The echoed input line reads "pty-$((6*7))"; only bash's output reads "pty-42".
    await sbx.pty.sendInput(pty.pid, enc.encode('echo pty-$((6*7))\n'))
    await out.waitFor('pty-42')

    await sbx.pty.resize(pty.pid, { cols: 100, rows: 30 })
    await sbx.pty.sendInput(pty.pid, enc.encode('stty size\n'))
    await out.waitFor('30 100')

    assert.equal(await sbx.pty.kill(pty.pid), true)
    const { value, err } = await captureRejection(pty.wait())
    assert.equal(value, undefined, 'PTY wait() must reject after kill')
    assertKilledBySignal(err, 'PTY wait() after pty.kill')
  })

  test('6. Sandbox.list and getInfo report the sandbox and its metadata', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const wanted = { suite: SUITE, run: RUN, role: 'shared' }

    const items = await listAll({ query: { metadata: { suite: SUITE, run: RUN } } })
    const mine = items.find((s) => s.sandboxId === sbx.sandboxId)
    assert.ok(mine, `sandbox ${sbx.sandboxId} missing from Sandbox.list: ${JSON.stringify(items)}`)
    assert.equal(mine.state, 'running')
    assert.deepEqual(mine.metadata, wanted)
    for (const s of items) {
      assert.equal(s.metadata.suite, SUITE, `list filter let through ${s.sandboxId}`)
      assert.equal(s.metadata.run, RUN, `list filter let through ${s.sandboxId}`)
    }

    const none = await listAll({ query: { metadata: { suite: SUITE, run: `other-${randomUUID()}` } } })
    assert.equal(
      none.some((s) => s.sandboxId === sbx.sandboxId),
      false,
      'a metadata query that does not match must not return the sandbox',
    )

    for (const [name, info] of [
      ['Sandbox.getInfo(id)', await Sandbox.getInfo(sbx.sandboxId)],
      ['sbx.getInfo()', await sbx.getInfo()],
    ]) {
      assert.equal(info.sandboxId, sbx.sandboxId, `${name}: sandboxId`)
      assert.equal(typeof info.templateId, 'string', `${name}: templateId`)
      assert.notEqual(info.templateId, '', `${name}: templateId`)
      assert.ok(
        info.templateId === TEMPLATE || info.name === TEMPLATE,
        `${name}: templateId (${info.templateId}) or name/alias (${info.name}) must be '${TEMPLATE}'`,
      )
      assert.deepEqual(info.metadata, wanted, `${name}: metadata`)
      assert.equal(info.state, 'running', `${name}: state`)
      assert.ok(info.endAt.getTime() > info.startedAt.getTime(), `${name}: endAt must be after startedAt`)
    }
  })

  test('7. setTimeout extends the sandbox; kill removes it', { timeout: TEST_TIMEOUT }, async () => {
    const role = `lifecycle-${randomUUID()}`
    const sbx = await createOwnedSandbox({ metadata: { role } })
    const id = sbx.sandboxId

    const before = await sbx.getInfo()
    const leftBefore = before.endAt.getTime() - Date.now()
    assert.ok(leftBefore <= SANDBOX_TIMEOUT_MS + 5_000, `initial time left ${leftBefore} ms exceeds the requested timeout`)

    await sbx.setTimeout(300_000)
    const afterSet = await sbx.getInfo()
    const leftAfter = afterSet.endAt.getTime() - Date.now()
    assert.ok(
      leftAfter > 240_000 && leftAfter <= 305_000,
      `after setTimeout(300_000) expected ~300 s left, got ${leftAfter} ms (endAt ${afterSet.endAt.toISOString()})`,
    )

    assert.equal(await sbx.kill(), true)
    perTestSandboxes.delete(sbx)

    const listed = await listAll({ query: { metadata: { suite: SUITE, run: RUN, role } } })
    assert.equal(
      listed.some((s) => s.sandboxId === id && s.state === 'running'),
      false,
      `killed sandbox still listed as running: ${JSON.stringify(listed)}`,
    )

    await rejectsWith(Sandbox.getInfo(id), SandboxNotFoundError, 'Sandbox.getInfo after kill')
    await rejectsWith(Sandbox.connect(id), SandboxNotFoundError, 'Sandbox.connect after kill')
    assert.equal(await sbx.isRunning(), false, 'isRunning() after kill')
    assert.equal(await Sandbox.kill(id), false, 'killing a killed sandbox reports not found')
  })

  describe('8. bad input through the SDK', () => {
    test('an unknown template is rejected with a 4xx that names the template', { timeout: TEST_TIMEOUT }, async () => {
      const template = `no-such-template-${randomUUID().slice(0, 8)}`
      const err = await rejectsWith(
        (async () => {
          const s = await Sandbox.create(template, {
            timeoutMs: SANDBOX_TIMEOUT_MS,
            metadata: { suite: SUITE, run: RUN, role: 'bad-template' },
          })
          perTestSandboxes.add(s)
          return s
        })(),
        SandboxError,
        `Sandbox.create('${template}')`,
      )
      assert.ok(
        typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500,
        `expected a 4xx status, got ${err.statusCode}: ${err.message}`,
      )
      assert.ok(err.message.includes(template), `error message should name the template: ${err.message}`)
    })

    test('a wrong API key is rejected with AuthenticationError', { timeout: TEST_TIMEOUT }, async () => {
      const apiKey = 'e2b_' + '0'.repeat(40)
      await rejectsWith(
        (async () => {
          const s = await Sandbox.create(TEMPLATE, {
            apiKey,
            timeoutMs: SANDBOX_TIMEOUT_MS,
            metadata: { suite: SUITE, run: RUN, role: 'bad-key' },
          })
          perTestSandboxes.add(s)
          return s
        })(),
        AuthenticationError,
        'Sandbox.create with a wrong API key',
      )
      await rejectsWith(Sandbox.list({ apiKey }).nextItems(), AuthenticationError, 'Sandbox.list with a wrong API key')
    })

    test('running a command on a killed sandbox rejects', { timeout: TEST_TIMEOUT }, async () => {
      const sbx = await createOwnedSandbox({ metadata: { role: 'killed' } })
      assert.equal((await sbx.commands.run('echo alive')).stdout, 'alive\n')
      assert.equal(await sbx.kill(), true)
      perTestSandboxes.delete(sbx)
      // E2B answers envd requests for a sandbox that is gone with 502, which
      // the SDK surfaces as SandboxNotFoundError when starting a process.
      await rejectsWith(sbx.commands.run('echo hi'), SandboxNotFoundError, 'commands.run on a killed sandbox')
    })
  })
})
