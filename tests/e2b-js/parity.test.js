// The e2b SDK's surface beyond the core, driven by the unmodified package
// against sbx: file metadata, signed file URLs and secured sandboxes, pause
// kinds and lifecycle options, list filters, and the smaller differences a
// user hits (snapshot names, removing what is not there, relative paths, a
// command whose sandbox is killed). Run as the other suites (see
// e2b.test.js).

import { describe, test, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'

import { SBX_URL, SBX_API_KEY } from './env.js'

const { Sandbox, SandboxError, TimeoutError, InvalidArgumentError } = await import('e2b')

const RUN = randomUUID()
const TEST_TIMEOUT = 120_000
const SANDBOX_TIMEOUT_MS = 120_000
const ENVD_PORT = 49983

/** Sandboxes created by the current test; killed after it, pass or fail. */
const owned = new Set()

async function create(template = 'base', opts = {}) {
  const sbx = await Sandbox.create(template, {
    timeoutMs: SANDBOX_TIMEOUT_MS,
    ...opts,
    metadata: { suite: 'e2b-js-parity', run: RUN, ...(opts.metadata ?? {}) },
  })
  owned.add(sbx)
  return sbx
}

afterEach(async () => {
  for (const sbx of owned) {
    try {
      await Sandbox.kill(sbx.sandboxId, { requestTimeoutMs: 20_000 })
    } catch (err) {
      console.error(`cleanup: could not kill ${sbx.sandboxId}: ${err}`)
    }
  }
  owned.clear()
})

/** A raw control-plane request, for what the SDK checks before sending. */
async function api(method, path, body) {
  const res = await fetch(SBX_URL + path, {
    method,
    headers: { 'X-API-Key': SBX_API_KEY, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  return { status: res.status, body: await res.json().catch(() => null) }
}

/**
 * Fetches a URL of sandbox sbx's envd port as a browser given it would:
 * with nothing but the routing headers (SBX_URL names no sandbox), so no
 * access token.
 */
function envdFetch(sbx, url, init = {}) {
  return fetch(url, {
    ...init,
    headers: { ...(init.headers ?? {}), 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': String(ENVD_PORT) },
  })
}

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

// A process holding a counter in memory; its pid tells whether the
// sandbox's processes survived.
const DAEMON = `setsid nohup python3 -c '
import os, time
while True:
    open("/tmp/pid.tmp", "w").write(str(os.getpid()))
    os.rename("/tmp/pid.tmp", "/tmp/pid")
    time.sleep(0.05)
' >/dev/null 2>&1 &`

async function daemonPid(sbx) {
  for (let i = 0; i < 200; i++) {
    const out = (await sbx.commands.run('cat /tmp/pid 2>/dev/null || true')).stdout.trim()
    if (out) return Number(out)
    await new Promise((r) => setTimeout(r, 50))
  }
  assert.fail('the daemon never wrote its pid')
}

/** Whether a process with pid runs in the sandbox. */
async function running(sbx, pid) {
  const r = await sbx.commands.run(`kill -0 ${pid} 2>/dev/null && echo yes || echo no`)
  return r.stdout.trim() === 'yes'
}

describe('file metadata', () => {
  test('write with metadata; list, getInfo, rename, xattrs from inside; overwrite clears', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create()
    const dir = '/home/user/md'
    // Multipart (a string), octet-stream, and several files in one call.
    const a = await sbx.files.write(`${dir}/a.txt`, 'A', { metadata: { owner: 'alice', 'Build-ID': '7' } })
    assert.deepEqual(a.metadata, { owner: 'alice', 'build-id': '7' }, 'keys are lowercased, as envd does')
    const b = await sbx.files.write(`${dir}/b.txt`, 'B', { metadata: { owner: 'bob' }, useOctetStream: true })
    assert.deepEqual(b.metadata, { owner: 'bob' })
    const many = await sbx.files.write(
      [
        { path: `${dir}/c.txt`, data: 'C' },
        { path: `${dir}/d.txt`, data: 'D' },
      ],
      { metadata: { batch: '1' } },
    )
    assert.deepEqual(
      many.map((e) => e.metadata),
      [{ batch: '1' }, { batch: '1' }],
    )

    assert.deepEqual((await sbx.files.getInfo(`${dir}/a.txt`)).metadata, { owner: 'alice', 'build-id': '7' })
    const listed = Object.fromEntries((await sbx.files.list(dir)).map((e) => [e.name, e.metadata]))
    assert.deepEqual(listed, {
      'a.txt': { owner: 'alice', 'build-id': '7' },
      'b.txt': { owner: 'bob' },
      'c.txt': { batch: '1' },
      'd.txt': { batch: '1' },
    })
    const moved = await sbx.files.rename(`${dir}/b.txt`, `${dir}/moved.txt`)
    assert.deepEqual(moved.metadata, { owner: 'bob' }, 'metadata travels with a rename')

    // Set inside the sandbox, as user.e2b.* extended attributes.
    await sbx.commands.run(`python3 -c 'import os; os.setxattr("${dir}/moved.txt", "user.e2b.stage", b"inside")'`)
    assert.deepEqual((await sbx.files.getInfo(`${dir}/moved.txt`)).metadata, { owner: 'bob', stage: 'inside' })

    // Overwriting replaces the metadata: without any, it is cleared.
    await sbx.files.write(`${dir}/moved.txt`, 'again', { metadata: { owner: 'carol' } })
    assert.deepEqual((await sbx.files.getInfo(`${dir}/moved.txt`)).metadata, { owner: 'carol' })
    const cleared = await sbx.files.write(`${dir}/moved.txt`, 'plain')
    assert.equal(cleared.metadata, undefined)
    assert.equal((await sbx.files.getInfo(`${dir}/moved.txt`)).metadata, undefined)

    // Bad metadata: the SDK refuses it before sending; sbx refuses what a
    // client sends anyway (non-ASCII, a key past envd's 246 bytes).
    await assert.rejects(sbx.files.write(`${dir}/x`, 'x', { metadata: { 'bad key': 'v' } }), InvalidArgumentError)
    const url = new URL('/files', SBX_URL)
    url.searchParams.set('path', `${dir}/raw.txt`)
    for (const [name, value] of [
      ['X-Metadata-K', 'caf\u00e9'],
      [`X-Metadata-${'k'.repeat(247)}`, 'v'],
      ['X-Metadata-K', 'v'.repeat(4096)],
    ]) {
      const res = await envdFetch(sbx, url, {
        method: 'POST',
        body: 'x',
        headers: { 'X-Access-Token': sbx.envdAccessToken, 'Content-Type': 'application/octet-stream', [name]: value },
      })
      assert.equal(res.status, 400, `${name.slice(0, 20)}…: ${await res.text()}`)
    }
    assert.equal(await sbx.files.exists(`${dir}/raw.txt`), false, 'a refused upload writes nothing')
  })

  test('watch events carry entry info when asked, with the metadata', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create()
    await sbx.files.makeDir('/home/user/w')
    const events = []
    let resolve
    const seen = new Promise((r) => (resolve = r))
    const handle = await sbx.files.watchDir(
      '/home/user/w',
      (ev) => {
        events.push(ev)
        if (ev.entry?.metadata?.tag === 'v1') resolve()
      },
      { includeEntry: true },
    )
    try {
      await sbx.files.write('/home/user/w/f.txt', 'hello', { metadata: { tag: 'v1' } })
      await Promise.race([seen, new Promise((_, rej) => setTimeout(() => rej(new Error(`no event with the entry: ${JSON.stringify(events)}`)), 20_000))])
      const ev = events.find((e) => e.entry?.metadata?.tag === 'v1')
      assert.equal(ev.name, 'f.txt')
      assert.equal(ev.entry.path, '/home/user/w/f.txt')
    } finally {
      await handle.stop()
    }
  })
})

describe('signed file URLs and secured sandboxes', () => {
  test('downloadUrl and uploadUrl, with and without expiry, for user and root', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create()
    assert.ok(sbx.envdAccessToken, 'every sbx sandbox is secured: it has an access token')
    await sbx.files.write('/home/user/dl.txt', 'for the user')
    await sbx.files.write('/root/dl.txt', 'for root', { user: 'root' })

    for (const [path, user, want] of [
      ['/home/user/dl.txt', undefined, 'for the user'],
      ['dl.txt', undefined, 'for the user'],
      ['/root/dl.txt', 'root', 'for root'],
    ]) {
      for (const exp of [undefined, 60]) {
        const url = await sbx.downloadUrl(path, { user, useSignatureExpiration: exp })
        assert.ok(new URL(url).searchParams.get('signature')?.startsWith('v1_'), url)
        const res = await envdFetch(sbx, url)
        assert.equal(res.status, 200, `${path} as ${user ?? 'default'} (expiry ${exp}): ${res.status}`)
        assert.equal(await res.text(), want)
      }
    }

    for (const [path, user, owner] of [
      ['/home/user/up.txt', undefined, 'user'],
      ['/root/up.txt', 'root', 'root'],
    ]) {
      for (const exp of [undefined, 60]) {
        const url = await sbx.uploadUrl(path, { user, useSignatureExpiration: exp })
        const form = new FormData()
        form.append('file', new Blob([`up ${exp}`]), 'ignored-name')
        const res = await envdFetch(sbx, url, { method: 'POST', body: form })
        assert.equal(res.status, 200, `upload ${path} (expiry ${exp}): ${await res.text()}`)
        assert.equal(await sbx.files.read(path, { user: 'root' }), `up ${exp}`)
        assert.equal((await sbx.files.getInfo(path, { user: 'root' })).owner, owner)
      }
    }
  })

  test('an expired, wrong or misapplied signature is 401; no token is 401', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create()
    await sbx.files.write('/home/user/s.txt', 'secret')
    await sbx.files.write('/home/user/other.txt', 'other')

    const expired = await sbx.downloadUrl('/home/user/s.txt', { useSignatureExpiration: -10 })
    const good = new URL(await sbx.downloadUrl('/home/user/s.txt'))
    const wrong = new URL(good)
    wrong.searchParams.set('signature', 'v1_' + 'A'.repeat(43))
    const otherPath = new URL(good)
    otherPath.searchParams.set('path', '/home/user/other.txt')
    const asRoot = new URL(good)
    asRoot.searchParams.set('username', 'root')
    const later = new URL(await sbx.downloadUrl('/home/user/s.txt', { useSignatureExpiration: 60 }))
    later.searchParams.set('signature_expiration', String(Number(later.searchParams.get('signature_expiration')) + 3600))
    const noToken = new URL('/files', SBX_URL)
    noToken.searchParams.set('path', '/home/user/s.txt')
    for (const [name, url] of [
      ['expired', expired],
      ['wrong signature', wrong],
      ['a signature for another path', otherPath],
      ['a signature for another user', asRoot],
      ['a moved expiry', later],
      ['neither signature nor token', noToken],
    ]) {
      const res = await envdFetch(sbx, url)
      assert.equal(res.status, 401, `${name}: ${res.status} ${await res.text()}`)
    }
    // A download URL does not authorise an upload.
    const form = new FormData()
    form.append('file', new Blob(['overwritten']), 's.txt')
    const res = await envdFetch(sbx, good, { method: 'POST', body: form })
    assert.equal(res.status, 401)
    assert.equal(await sbx.files.read('/home/user/s.txt'), 'secret')
    // The token alone still works.
    const ok = await envdFetch(sbx, noToken, { headers: { 'X-Access-Token': sbx.envdAccessToken } })
    assert.equal(ok.status, 200)
  })
})

describe('pause kinds and lifecycle', () => {
  test('pause({keepMemory: false}) keeps the files; the sandbox reboots on connect', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create()
    await sbx.files.write('/home/user/kept.txt', 'kept')
    await sbx.commands.run(DAEMON)
    const pid = await daemonPid(sbx)
    assert.equal(await sbx.pause({ keepMemory: false }), true)
    const info = await sbx.getInfo()
    assert.equal(info.state, 'paused')
    const back = await Sandbox.connect(sbx.sandboxId, { timeoutMs: SANDBOX_TIMEOUT_MS })
    assert.equal(await back.files.read('/home/user/kept.txt'), 'kept')
    assert.equal(await running(back, pid), false, 'a filesystem-only pause does not keep processes')
  })

  test("connect({onResume: 'restore'}) continues the processes; 'reboot' starts afresh", { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create()
    await sbx.files.write('/home/user/kept.txt', 'kept')
    await sbx.commands.run(DAEMON)
    const pid = await daemonPid(sbx)

    await sbx.pause()
    const restored = await Sandbox.connect(sbx.sandboxId, { onResume: 'restore', timeoutMs: SANDBOX_TIMEOUT_MS })
    assert.equal(await running(restored, pid), true, "onResume 'restore' continues the processes")

    await restored.pause()
    const rebooted = await Sandbox.connect(sbx.sandboxId, { onResume: 'reboot', timeoutMs: SANDBOX_TIMEOUT_MS })
    assert.equal(await rebooted.files.read('/home/user/kept.txt'), 'kept')
    assert.equal(await running(rebooted, pid), false, "onResume 'reboot' starts the sandbox afresh")

    await assert.rejects(Sandbox.connect(sbx.sandboxId, { onResume: 'sideways' }), InvalidArgumentError)
  })

  test("lifecycle onTimeout {action: 'pause', keepMemory: false} pauses with the files only", { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create('base', { timeoutMs: 3_000, lifecycle: { onTimeout: { action: 'pause', keepMemory: false } } })
    await sbx.files.write('/home/user/kept.txt', 'kept')
    await sbx.commands.run(DAEMON)
    const pid = await daemonPid(sbx)
    const info = await awaitState(sbx.sandboxId, 'paused')
    assert.equal(info.lifecycle.onTimeout, 'pause')
    assert.equal(info.lifecycle.autoResume, false)
    const back = await Sandbox.connect(sbx.sandboxId, { timeoutMs: SANDBOX_TIMEOUT_MS })
    assert.equal(await back.files.read('/home/user/kept.txt'), 'kept')
    assert.equal(await running(back, pid), false)
  })

  test("lifecycle onTimeout 'kill' kills at the timeout", { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create('base', { timeoutMs: 2_000, lifecycle: { onTimeout: 'kill' } })
    assert.equal((await sbx.getInfo()).lifecycle.onTimeout, 'kill')
    const deadline = Date.now() + 60_000
    while (await sbx.isRunning()) {
      if (Date.now() > deadline) assert.fail('the sandbox outlived its timeout')
      await new Promise((r) => setTimeout(r, 200))
    }
    await assert.rejects(Sandbox.getInfo(sbx.sandboxId), (err) => err instanceof SandboxError)
  })

  test('autoResume: an HTTP request to a paused sandbox wakes it and is answered', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create('base', { lifecycle: { onTimeout: 'pause', autoResume: true } })
    assert.equal((await sbx.getInfo()).lifecycle.autoResume, true)
    await sbx.files.write('/home/user/www/index.html', 'awake')
    await sbx.commands.run('cd /home/user/www && python3 -m http.server 8000', { background: true })
    const get = () => fetch(SBX_URL + '/', { headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '8000' } })
    for (let i = 0; ; i++) {
      const res = await get()
      if (res.status === 200) break
      if (i > 100) assert.fail(`the server in the sandbox never answered: ${res.status}`)
      await new Promise((r) => setTimeout(r, 100))
    }
    assert.equal(await sbx.pause(), true)
    assert.equal((await sbx.getInfo()).state, 'paused')
    const res = await get()
    assert.equal(res.status, 200)
    assert.equal(await res.text(), 'awake')
    assert.equal((await sbx.getInfo()).state, 'running')

    // The SDK refuses what cannot work before sending anything.
    await assert.rejects(
      Sandbox.create('base', { lifecycle: { onTimeout: { action: 'pause', keepMemory: false }, autoResume: true } }),
      InvalidArgumentError,
    )
  })
})

describe('smaller differences', () => {
  test('a command whose sandbox is killed under it fails as killed, not as a timeout', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create()
    const h = await sbx.commands.run('sleep 600', { background: true })
    await Sandbox.kill(sbx.sandboxId)
    owned.delete(sbx)
    await assert.rejects(h.wait(), (err) => {
      assert.ok(err instanceof TimeoutError, `${err?.constructor?.name}: ${err?.message}`)
      assert.match(err.message, /killed or reached its end of life/)
      return true
    })
  })

  test('list honours startedAfter, template, state and metadata; bad filters are 400', { timeout: TEST_TIMEOUT }, async () => {
    const tag = randomUUID()
    const first = await create('base', { metadata: { tag } })
    await new Promise((r) => setTimeout(r, 50))
    const between = new Date()
    await new Promise((r) => setTimeout(r, 50))
    const second = await create('base', { metadata: { tag } })

    const ids = async (query, order) => {
      const out = []
      const pager = Sandbox.list({ query: { metadata: { tag }, ...query }, order })
      while (pager.hasNext) out.push(...(await pager.nextItems()).map((s) => s.sandboxId))
      return out
    }
    assert.deepEqual(await ids({}), [second.sandboxId, first.sandboxId])
    assert.deepEqual(await ids({}, 'asc'), [first.sandboxId, second.sandboxId])
    assert.deepEqual(await ids({ startedAfter: between }), [second.sandboxId])
    assert.deepEqual(await ids({ startedAfter: new Date(Date.now() + 60_000) }), [])
    assert.deepEqual(await ids({ template: 'base', state: ['running'] }), [second.sandboxId, first.sandboxId])
    assert.deepEqual(await ids({ state: ['paused'] }), [])

    for (const q of ['startedAfter=yesterday', 'order=sideways', 'state=sleeping', 'limit=-1', 'metadata=a%3D%25zz']) {
      const res = await api('GET', `/v2/sandboxes?${q}`)
      assert.equal(res.status, 400, `${q}: ${JSON.stringify(res.body)}`)
      assert.equal(res.body.code, 400)
    }
  })

  test('snapshot names may start with snap-, as on E2B', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create()
    await sbx.files.write('/home/user/s.txt', 'snapped')
    const name = `snap-${RUN.slice(0, 8)}`
    const snap = await sbx.createSnapshot({ name })
    try {
      assert.deepEqual(snap.names, [name])
      const copy = await create(name)
      assert.equal(await copy.files.read('/home/user/s.txt'), 'snapped')
      await Sandbox.kill(copy.sandboxId)
      owned.delete(copy)
    } finally {
      assert.equal(await Sandbox.deleteSnapshot(name), true)
    }
  })

  test('removing a path that does not exist succeeds, as on E2B', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create()
    await sbx.files.remove('/home/user/never-there')
    await sbx.files.remove('never-there/either')
    assert.equal(await sbx.files.exists('/home/user/never-there'), false)
  })

  test('sandbox logs: the agent log, filtered; bad queries are 400, unknown sandboxes 404', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create()
    const t0 = Date.now()
    await sbx.commands.run('echo logged')
    await assert.rejects(sbx.commands.run('exit 3'))
    const all = await api('GET', `/v2/sandboxes/${sbx.sandboxId}/logs`)
    assert.equal(all.status, 200, JSON.stringify(all.body))
    const started = all.body.logs.filter((e) => e.message === 'process started')
    assert.ok(started.length >= 2, JSON.stringify(all.body.logs))
    for (const e of all.body.logs) {
      assert.ok(!Number.isNaN(Date.parse(e.timestamp)), e.timestamp)
      assert.ok(['debug', 'info', 'warn', 'error'].includes(e.level), e.level)
      assert.equal(typeof e.fields, 'object')
    }
    const ended = all.body.logs.filter((e) => e.message === 'process ended').map((e) => e.fields.status)
    assert.ok(ended.some((st) => st.includes('3')), `an end with status 3 among ${JSON.stringify(ended)}`)

    const recent = await api('GET', `/v2/sandboxes/${sbx.sandboxId}/logs?cursor=${t0 - 1000}&search=ended`)
    assert.ok(recent.body.logs.length >= 2 && recent.body.logs.every((e) => e.message.includes('ended')), JSON.stringify(recent.body))
    const newest = await api('GET', `/v2/sandboxes/${sbx.sandboxId}/logs?direction=backward&limit=1`)
    assert.deepEqual(newest.body.logs, all.body.logs.slice(-1))
    const errorsOnly = await api('GET', `/v2/sandboxes/${sbx.sandboxId}/logs?level=error`)
    assert.ok(errorsOnly.body.logs.every((e) => e.level === 'error'))
    const v1 = await api('GET', `/sandboxes/${sbx.sandboxId}/logs?start=0&limit=2`)
    assert.equal(v1.status, 200)
    assert.equal(v1.body.logs.length, 2)
    assert.deepEqual(v1.body.logEntries, all.body.logs.slice(0, 2))

    for (const q of ['direction=sideways', 'level=loud', 'limit=1001', 'cursor=-1', 'cursor=soon', `search=${'x'.repeat(257)}`]) {
      const res = await api('GET', `/v2/sandboxes/${sbx.sandboxId}/logs?${q}`)
      assert.equal(res.status, 400, `${q.slice(0, 20)}: ${JSON.stringify(res.body)}`)
    }
    const unknown = await api('GET', '/v2/sandboxes/nosuchsandbox0000000/logs')
    assert.equal(unknown.status, 404)
    assert.equal(unknown.body.code, 404)
  })

  test("base has python beside python3, and the user may sudo without a password, as E2B's base", { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create()
    const py = await sbx.commands.run('python --version; python3 --version; readlink -f "$(command -v python)"')
    const [v, v3, target] = py.stdout.trim().split('\n')
    assert.match(v, /^Python 3\.\d+\.\d+$/)
    assert.equal(v, v3)
    assert.match(target, /\/python3(\.\d+)?$/)
    assert.equal((await sbx.commands.run('python -c "print(6*7)"')).stdout, '42\n')

    // sudo needs no password and no terminal; what it gives is the box's
    // root, the same as the SDK's user: 'root' (capabilities included).
    const who = await sbx.commands.run('id -u; sudo -n id -u; sudo -n whoami; grep CapBnd /proc/self/status')
    const [uid, sudoUid, sudoName] = who.stdout.split('\n')
    assert.deepEqual([uid, sudoUid, sudoName], ['1000', '0', 'root'])
    const capsUser = await sbx.commands.run('sudo -n grep CapEff /proc/self/status')
    const capsRoot = await sbx.commands.run('grep CapEff /proc/self/status', { user: 'root' })
    assert.equal(capsUser.stdout, capsRoot.stdout)
    await sbx.commands.run('sudo -n sh -c "echo made-by-sudo > /root/sudo.txt"')
    assert.equal(await sbx.files.read('/root/sudo.txt', { user: 'root' }), 'made-by-sudo\n')
    // The box's hostname resolves (sudo looks it up, and warns otherwise).
    const host = await sbx.commands.run('getent hosts "$(hostname)"; sudo -n true 2>&1')
    assert.match(host.stdout, /^\S+\s+\S+/)
    assert.doesNotMatch(host.stdout, /unable to resolve/)
    // su still wants root's password, which nobody has.
    const su = await sbx.commands.run('su -c "id -u" root </dev/null 2>&1; echo "exit $?"')
    assert.doesNotMatch(su.stdout, /^0$/m, su.stdout)
    assert.match(su.stdout, /exit [1-9]/)
    assert.equal((await sbx.commands.run('id -u', { user: 'root' })).stdout, '0\n')
  })

  test("writeFiles with relative paths writes under the user's home", { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await create()
    const out = await sbx.files.write([
      { path: 'rel/a.txt', data: 'A' },
      { path: 'b.txt', data: 'B' },
    ])
    assert.deepEqual(
      out.map((e) => e.path),
      ['/home/user/rel/a.txt', '/home/user/b.txt'],
    )
    assert.equal(await sbx.files.read('/home/user/rel/a.txt'), 'A')
    const asRoot = await sbx.files.write([{ path: 'r.txt', data: 'R' }], { user: 'root' })
    assert.equal(asRoot[0].path, '/root/r.txt')
  })
})
