// End-to-end test of sbx's filesystem (envd's /files and filesystem.Filesystem)
// driven by the unmodified `e2b` JavaScript SDK.
//
// Run against a running sbx server:
//
//   SBX_URL=http://127.0.0.1:49982 SBX_API_KEY=e2b_... npm test
//
// Same conventions as e2b.test.js: SBX_URL is both the API and the envd URL,
// the run fails (never skips) without SBX_URL/SBX_API_KEY, every sandbox is
// tagged {suite: 'e2b-js', run: <uuid>} and killed by the hooks.

import { describe, test, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomUUID } from 'node:crypto'
import { readFileSync, readdirSync } from 'node:fs'

// Environment (SBX_URL, SBX_API_KEY → E2B_*): set before the SDK loads.
import { SBX_URL, SBX_API_KEY } from './env.js'

const {
  Sandbox,
  SandboxError,
  NotFoundError,
  FileNotFoundError,
  InvalidArgumentError,
  FilesystemEventType,
  FileType,
} = await import('e2b')

// ---------------------------------------------------------------------------
// Constants and helpers
// ---------------------------------------------------------------------------

const SUITE = 'e2b-js'
const RUN = randomUUID()
const TEMPLATE = 'base'
const SANDBOX_TIMEOUT_MS = 300_000
const TEST_TIMEOUT = 90_000
const LARGE_TEST_TIMEOUT = 240_000
const HOOK_TIMEOUT = 60_000
// Upper bound for waiting on an event that should arrive promptly. This is a
// failure bound, not synchronisation: waits resolve as soon as the event comes.
const EVENT_TIMEOUT_MS = 20_000
const HOME = '/home/user'

/** Watch handles opened by the currently running test; stopped in afterEach. */
const perTestWatches = new Set()

async function killQuietly(sbx) {
  try {
    await sbx.kill({ requestTimeoutMs: 20_000 })
  } catch (err) {
    console.error(`cleanup: could not kill sandbox ${sbx.sandboxId}: ${err}`)
  }
}

// One sandbox shared by all tests, created lazily so any single test can run
// on its own (--test-name-pattern); killed in the top-level after hook. Each
// test works in a directory of its own.
let sharedPromise
function shared() {
  sharedPromise ??= Sandbox.create(TEMPLATE, {
    timeoutMs: SANDBOX_TIMEOUT_MS,
    metadata: { suite: SUITE, run: RUN, role: 'files' },
  })
  return sharedPromise
}

/** A fresh directory path under the user's home (not created). */
function freshDir(label) {
  return `${HOME}/e2b-js-files-${label}-${randomUUID().slice(0, 8)}`
}

/** Shell-quotes s for bash. */
function sq(s) {
  return `'${String(s).replaceAll("'", `'\\''`)}'`
}

async function captureRejection(promise) {
  try {
    const value = await promise
    return { value }
  } catch (err) {
    return { err }
  }
}

/** Asserts that `promise` rejects with an instance of `cls`; returns the error. */
async function rejectsWith(promise, cls, what) {
  const { value, err } = await captureRejection(promise)
  assert.ok(err !== undefined, `${what}: expected a rejection, resolved with ${describeValue(value)}`)
  assert.ok(
    err instanceof cls,
    `${what}: expected ${cls.name}, got ${err?.constructor?.name}: ${err?.message}`,
  )
  return err
}

function describeValue(v) {
  if (v instanceof Uint8Array) return `Uint8Array(${v.length})`
  if (typeof v === 'string') return JSON.stringify(v.length > 200 ? v.slice(0, 200) + '…' : v)
  try {
    return JSON.stringify(v)
  } catch {
    return String(v)
  }
}

/** Collects a ReadableStream<Uint8Array> into one Uint8Array. */
async function collectStream(stream) {
  const chunks = []
  let total = 0
  for await (const chunk of stream) {
    assert.ok(chunk instanceof Uint8Array, `stream chunk must be a Uint8Array, got ${chunk?.constructor?.name}`)
    chunks.push(chunk)
    total += chunk.length
  }
  const out = new Uint8Array(total)
  let off = 0
  for (const c of chunks) {
    out.set(c, off)
    off += c.length
  }
  return out
}

function sha256(bytes) {
  return createHash('sha256').update(bytes).digest('hex')
}

/** Compares two byte arrays, reporting the first difference (not the whole arrays). */
function assertBytesEqual(actual, expected, what) {
  assert.ok(actual instanceof Uint8Array, `${what}: expected a Uint8Array, got ${actual?.constructor?.name}`)
  assert.equal(actual.length, expected.length, `${what}: length`)
  for (let i = 0; i < expected.length; i++) {
    if (actual[i] !== expected[i]) {
      assert.fail(`${what}: first difference at byte ${i}: got ${actual[i]}, want ${expected[i]}`)
    }
  }
}

/** Owner name of path in the sandbox, as stat(1) there reports it. */
async function ownerOf(sbx, path, user) {
  const res = await sbx.commands.run(`stat -c %U ${sq(path)}`, user ? { user } : {})
  return res.stdout.trim()
}

/** Sorted names of entries. */
function namesOf(entries) {
  return entries.map((e) => e.name).sort()
}

// ---------------------------------------------------------------------------
// Hooks: clean up everything, even when assertions fail.
// ---------------------------------------------------------------------------

afterEach(async () => {
  for (const h of perTestWatches) {
    try {
      await h.stop()
    } catch {
      // the watch or its sandbox is gone already
    }
  }
  perTestWatches.clear()
}, { timeout: HOOK_TIMEOUT })

after(async () => {
  if (!sharedPromise) return
  const res = await captureRejection(sharedPromise)
  if (res.value) await killQuietly(res.value)
}, { timeout: HOOK_TIMEOUT })

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

describe('sbx filesystem through the e2b JS SDK', () => {
  describe('1. write and read round trips', () => {
    test('text written is read back as text, with the returned WriteInfo', { timeout: TEST_TIMEOUT }, async () => {
      const sbx = await shared()
      const dir = freshDir('text')
      const path = `${dir}/hello.txt`
      const text = 'héllo wörld ✓ 🚀\nsecond line\n'
      const info = await sbx.files.write(path, text)
      assert.deepEqual(
        { name: info.name, type: info.type, path: info.path },
        { name: 'hello.txt', type: FileType.FILE, path },
        `WriteInfo: ${describeValue(info)}`,
      )
      const back = await sbx.files.read(path)
      assert.equal(typeof back, 'string')
      assert.equal(back, text)
      assert.equal(await sbx.files.read(path, { format: 'text' }), text)

      // Overwriting replaces the content entirely (truncates).
      await sbx.files.write(path, 'short')
      assert.equal(await sbx.files.read(path), 'short')

      // An empty file reads back as empty text and zero bytes.
      const empty = `${dir}/empty`
      await sbx.files.write(empty, '')
      assert.equal(await sbx.files.read(empty), '')
      const emptyBytes = await sbx.files.read(empty, { format: 'bytes' })
      assert.ok(emptyBytes instanceof Uint8Array)
      assert.equal(emptyBytes.length, 0)

      // Relative paths are taken from the user's home.
      const rel = `${dir.slice(HOME.length + 1)}/relative.txt`
      const relInfo = await sbx.files.write(rel, 'rel')
      assert.equal(relInfo.path, `${HOME}/${rel}`)
      assert.equal((await sbx.commands.run(`cat ${sq(`${HOME}/${rel}`)}`)).stdout, 'rel')
    })

    test('all 256 byte values round trip as bytes, blob and stream', { timeout: TEST_TIMEOUT }, async () => {
      const sbx = await shared()
      const dir = freshDir('bytes')
      const path = `${dir}/all-bytes.bin`
      const bytes = new Uint8Array(256 * 4)
      for (let i = 0; i < bytes.length; i++) bytes[i] = i % 256
      const info = await sbx.files.write(path, bytes.buffer)
      assert.equal(info.path, path)
      assert.equal(info.name, 'all-bytes.bin')

      const asBytes = await sbx.files.read(path, { format: 'bytes' })
      assertBytesEqual(asBytes, bytes, "read format 'bytes'")

      const asBlob = await sbx.files.read(path, { format: 'blob' })
      assert.ok(asBlob instanceof Blob, `format 'blob' must give a Blob, got ${asBlob?.constructor?.name}`)
      assert.equal(asBlob.size, bytes.length)
      assertBytesEqual(new Uint8Array(await asBlob.arrayBuffer()), bytes, "read format 'blob'")

      const asStream = await sbx.files.read(path, { format: 'stream' })
      assert.ok(asStream instanceof ReadableStream, `format 'stream' must give a ReadableStream, got ${asStream?.constructor?.name}`)
      assertBytesEqual(await collectStream(asStream), bytes, "read format 'stream'")

      // The file on the sandbox's disk holds exactly those bytes.
      const sum = (await sbx.commands.run(`sha256sum ${sq(path)}`)).stdout.split(' ')[0]
      assert.equal(sum, sha256(bytes), 'sha256sum in the sandbox')
    })

    test('a Blob, a ReadableStream and a gzip upload are written as given', { timeout: TEST_TIMEOUT }, async () => {
      const sbx = await shared()
      const dir = freshDir('blob')
      const blobBytes = new Uint8Array([0, 1, 2, 250, 251, 252, 253, 254, 255, 10, 13, 0])
      const blobPath = `${dir}/from-blob.bin`
      const blobInfo = await sbx.files.write(blobPath, new Blob([blobBytes, 'tail'], { type: 'application/x-test' }))
      assert.equal(blobInfo.path, blobPath)
      const want = new Uint8Array([...blobBytes, ...new TextEncoder().encode('tail')])
      assertBytesEqual(await sbx.files.read(blobPath, { format: 'bytes' }), want, 'Blob round trip')

      // A ReadableStream is uploaded as application/octet-stream (envd >= 0.5.7).
      const streamPath = `${dir}/from-stream.txt`
      const parts = ['alpha\n', 'beta\n', 'gamma\n']
      const stream = new ReadableStream({
        start(controller) {
          for (const p of parts) controller.enqueue(new TextEncoder().encode(p))
          controller.close()
        },
      })
      const streamInfo = await sbx.files.write(streamPath, stream)
      assert.equal(streamInfo.path, streamPath)
      assert.equal(await sbx.files.read(streamPath), parts.join(''))

      // gzip: the body is compressed on the wire; the file is not.
      const gzPath = `${dir}/gzipped.txt`
      const gzText = 'compress me '.repeat(1000)
      const gzInfo = await sbx.files.write(gzPath, gzText, { gzip: true })
      assert.equal(gzInfo.path, gzPath)
      assert.equal(await sbx.files.read(gzPath), gzText)
      assert.equal(await sbx.files.read(gzPath, { gzip: true }), gzText, 'read with Accept-Encoding: gzip')
      assert.equal((await sbx.commands.run(`wc -c < ${sq(gzPath)}`)).stdout.trim(), String(gzText.length))
    })

    test("files are owned by 'user' by default and by root when written as root", { timeout: TEST_TIMEOUT }, async () => {
      const sbx = await shared()
      const dir = freshDir('owner')
      const path = `${dir}/sub/mine.txt`
      await sbx.files.write(path, 'mine')
      assert.equal(await ownerOf(sbx, path), 'user', 'file written by default user')
      assert.equal(await ownerOf(sbx, `${dir}/sub`), 'user', 'directory created for the default user')
      assert.equal(await ownerOf(sbx, dir), 'user', 'directory created for the default user')

      const rootPath = `/root/e2b-js-files-${randomUUID().slice(0, 8)}/secret.txt`
      const info = await sbx.files.write(rootPath, 'root only', { user: 'root' })
      assert.equal(info.path, rootPath)
      assert.equal(await ownerOf(sbx, rootPath, 'root'), 'root')
      assert.equal(await sbx.files.read(rootPath, { user: 'root' }), 'root only')
      // ~ is root's home for root.
      assert.equal(await sbx.files.read(`~/${rootPath.slice('/root/'.length)}`, { user: 'root' }), 'root only')

      // The default user may neither read root's file nor write into /root.
      const readErr = await rejectsWith(sbx.files.read(rootPath), SandboxError, "read of root's file as user")
      assert.ok(!(readErr instanceof NotFoundError), `expected a permission error, got not-found: ${readErr.message}`)
      assert.match(readErr.message, /^403\b/, `expected HTTP 403, got: ${readErr.message}`)
      const writeErr = await rejectsWith(
        sbx.files.write('/root/e2b-js-denied.txt', 'x'),
        SandboxError,
        'write into /root as user',
      )
      assert.match(writeErr.message, /^403\b/, `expected HTTP 403, got: ${writeErr.message}`)
      assert.equal(await sbx.files.exists('/root/e2b-js-denied.txt', { user: 'root' }), false)
    })
  })

  test('2. write several files in one call, into new nested directories', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const dir = freshDir('multi')
    const bin = new Uint8Array([255, 0, 128, 7])
    const entries = [
      { path: `${dir}/a.txt`, data: 'file a' },
      { path: `${dir}/new1/b.txt`, data: 'file b\n' },
      { path: `${dir}/new1/new2/new3/c.bin`, data: bin.buffer },
      { path: `${dir}/other/d.txt`, data: new Blob(['file d']) },
    ]
    const infos = await sbx.files.write(entries)
    assert.ok(Array.isArray(infos), `an array write returns an array, got ${describeValue(infos)}`)
    assert.deepEqual(
      infos.map((i) => ({ name: i.name, type: i.type, path: i.path })),
      [
        { name: 'a.txt', type: 'file', path: `${dir}/a.txt` },
        { name: 'b.txt', type: 'file', path: `${dir}/new1/b.txt` },
        { name: 'c.bin', type: 'file', path: `${dir}/new1/new2/new3/c.bin` },
        { name: 'd.txt', type: 'file', path: `${dir}/other/d.txt` },
      ],
    )
    assert.equal(await sbx.files.read(`${dir}/a.txt`), 'file a')
    assert.equal(await sbx.files.read(`${dir}/new1/b.txt`), 'file b\n')
    assertBytesEqual(await sbx.files.read(`${dir}/new1/new2/new3/c.bin`, { format: 'bytes' }), bin, 'c.bin')
    assert.equal(await sbx.files.read(`${dir}/other/d.txt`), 'file d')

    // Every new directory exists, is a directory and belongs to the user.
    const res = await sbx.commands.run(
      `cd ${sq(dir)} && find . -printf '%y %u %p\\n' | LC_ALL=C sort`,
    )
    assert.equal(
      res.stdout,
      [
        'd user .',
        'd user ./new1',
        'd user ./new1/new2',
        'd user ./new1/new2/new3',
        'd user ./other',
        'f user ./a.txt',
        'f user ./new1/b.txt',
        'f user ./new1/new2/new3/c.bin',
        'f user ./other/d.txt',
      ].join('\n') + '\n',
    )

    // writeFiles is the same call under another name.
    const more = await sbx.files.writeFiles([
      { path: `${dir}/e.txt`, data: 'e' },
      { path: `${dir}/new1/f.txt`, data: 'f' },
    ])
    assert.deepEqual(more.map((i) => i.path), [`${dir}/e.txt`, `${dir}/new1/f.txt`])
    assert.equal(await sbx.files.read(`${dir}/new1/f.txt`), 'f')

    // An empty list writes nothing and makes no request.
    assert.deepEqual(await sbx.files.write([]), [])
  })

  test('3. list, getInfo, exists, makeDir, rename and remove', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const dir = freshDir('ops')
    await sbx.files.write([
      { path: `${dir}/top.txt`, data: '12345' },
      { path: `${dir}/sub/inner.txt`, data: '0123456789' },
      { path: `${dir}/sub/deeper/x.txt`, data: 'x' },
    ])

    // list, depth 1 (the default) and 2.
    const pick = (e) => ({ name: e.name, type: e.type, path: e.path })
    const byPath = (a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)
    const l1 = await sbx.files.list(dir)
    assert.deepEqual(l1.map(pick).sort(byPath), [
      { name: 'sub', type: 'dir', path: `${dir}/sub` },
      { name: 'top.txt', type: 'file', path: `${dir}/top.txt` },
    ])
    assert.deepEqual((await sbx.files.list(dir, { depth: 1 })).map(pick).sort(byPath), l1.map(pick).sort(byPath))
    assert.equal(l1.find((e) => e.name === 'top.txt').size, 5)

    const l2 = await sbx.files.list(dir, { depth: 2 })
    assert.deepEqual(l2.map(pick).sort(byPath), [
      { name: 'sub', type: 'dir', path: `${dir}/sub` },
      { name: 'deeper', type: 'dir', path: `${dir}/sub/deeper` },
      { name: 'inner.txt', type: 'file', path: `${dir}/sub/inner.txt` },
      { name: 'top.txt', type: 'file', path: `${dir}/top.txt` },
    ])
    assert.equal(l2.find((e) => e.name === 'inner.txt').size, 10)
    for (const e of l2) {
      assert.equal(e.owner, 'user', `${e.path}: owner`)
      assert.equal(e.group, 'user', `${e.path}: group`)
    }
    const l3 = await sbx.files.list(dir, { depth: 3 })
    assert.ok(l3.some((e) => e.path === `${dir}/sub/deeper/x.txt`), 'depth 3 reaches sub/deeper/x.txt')
    await rejectsWith(sbx.files.list(dir, { depth: 0 }), InvalidArgumentError, 'list with depth 0')

    // getInfo of a file and of a directory.
    const before = Date.now()
    const fi = await sbx.files.getInfo(`${dir}/top.txt`)
    assert.equal(fi.name, 'top.txt')
    assert.equal(fi.path, `${dir}/top.txt`)
    assert.equal(fi.type, FileType.FILE)
    assert.equal(fi.size, 5)
    assert.equal(fi.permissions, '-rw-r--r--')
    assert.equal(fi.mode, 0o644)
    assert.equal(fi.owner, 'user')
    assert.equal(fi.group, 'user')
    assert.equal(fi.symlinkTarget, undefined)
    assert.ok(fi.modifiedTime instanceof Date, 'modifiedTime is a Date')
    assert.ok(
      Math.abs(fi.modifiedTime.getTime() - before) < 120_000,
      `modifiedTime ${fi.modifiedTime.toISOString()} should be about now (${new Date(before).toISOString()})`,
    )
    const di = await sbx.files.getInfo(`${dir}/sub`)
    assert.equal(di.type, FileType.DIR)
    assert.equal(di.name, 'sub')
    assert.equal(di.permissions, 'drwxr-xr-x')
    assert.equal(di.mode, 0o755)
    assert.equal(di.owner, 'user')
    // The SDK's permissions string matches what the sandbox itself says.
    const statPerm = (await sbx.commands.run(`stat -c '%A %s %U' ${sq(`${dir}/sub/inner.txt`)}`)).stdout.trim()
    const ii = await sbx.files.getInfo(`${dir}/sub/inner.txt`)
    assert.equal(`${ii.permissions} ${ii.size} ${ii.owner}`, statPerm)
    await rejectsWith(sbx.files.getInfo(`${dir}/nope`), FileNotFoundError, 'getInfo of a missing path')

    // exists
    assert.equal(await sbx.files.exists(`${dir}/top.txt`), true)
    assert.equal(await sbx.files.exists(`${dir}/sub`), true)
    assert.equal(await sbx.files.exists(`${dir}/nope`), false)
    assert.equal(await sbx.files.exists(`${dir}/nope/deeper`), false)

    // makeDir: true when created (with parents), false when it exists.
    assert.equal(await sbx.files.makeDir(`${dir}/made/a/b`), true)
    assert.equal(await sbx.files.makeDir(`${dir}/made/a/b`), false)
    assert.equal(await sbx.files.makeDir(`${dir}/made`), false)
    const made = await sbx.files.getInfo(`${dir}/made/a/b`)
    assert.equal(made.type, FileType.DIR)
    assert.equal(made.owner, 'user')
    assert.equal(await ownerOf(sbx, `${dir}/made/a`), 'user')

    // rename moves a file into another directory.
    const moved = await sbx.files.rename(`${dir}/top.txt`, `${dir}/made/a/moved.txt`)
    assert.equal(moved.name, 'moved.txt')
    assert.equal(moved.path, `${dir}/made/a/moved.txt`)
    assert.equal(moved.type, FileType.FILE)
    assert.equal(moved.size, 5)
    assert.equal(await sbx.files.exists(`${dir}/top.txt`), false)
    assert.equal(await sbx.files.read(`${dir}/made/a/moved.txt`), '12345')
    // ... and a directory, with its contents.
    const movedDir = await sbx.files.rename(`${dir}/sub`, `${dir}/made/sub2`)
    assert.equal(movedDir.type, FileType.DIR)
    assert.equal(movedDir.path, `${dir}/made/sub2`)
    assert.equal(await sbx.files.read(`${dir}/made/sub2/deeper/x.txt`), 'x')
    await rejectsWith(
      sbx.files.rename(`${dir}/nope`, `${dir}/nope2`),
      FileNotFoundError,
      'rename of a missing path',
    )

    // remove a file: it is gone, and reading it is a FileNotFoundError.
    await sbx.files.remove(`${dir}/made/a/moved.txt`)
    assert.equal(await sbx.files.exists(`${dir}/made/a/moved.txt`), false)
    const nf = await rejectsWith(
      sbx.files.read(`${dir}/made/a/moved.txt`),
      FileNotFoundError,
      'read of a removed file',
    )
    assert.ok(nf instanceof NotFoundError, 'FileNotFoundError is a NotFoundError')
    // remove a directory with everything below it.
    await sbx.files.remove(`${dir}/made`)
    assert.equal(await sbx.files.exists(`${dir}/made`), false)
    assert.equal((await sbx.commands.run(`ls -A ${sq(dir)}`)).stdout, '')
    // Removing what is not there succeeds, as on E2B (envd's os.RemoveAll).
    await sbx.files.remove(`${dir}/made`)
    assert.equal(await sbx.files.exists(`${dir}/made`), false)
  })

  test('4. watchDir (recursive) reports create, write and remove in a subdirectory', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const dir = freshDir('watch')
    assert.equal(await sbx.files.makeDir(`${dir}/sub`), true)
    const rel = 'sub/watched.txt'
    const file = `${dir}/${rel}`

    const events = []
    const wanted = [FilesystemEventType.CREATE, FilesystemEventType.WRITE, FilesystemEventType.REMOVE]
    let resolveAll
    const allArrived = new Promise((resolve) => {
      resolveAll = resolve
    })
    const onEvent = (ev) => {
      events.push({ name: ev.name, type: ev.type })
      if (wanted.every((t) => events.some((e) => e.name === rel && e.type === t))) resolveAll()
    }
    let exitErr = null
    const handle = await sbx.files.watchDir(dir, onEvent, {
      recursive: true,
      timeoutMs: 0,
      onExit: (err) => {
        exitErr = err ?? null
      },
    })
    perTestWatches.add(handle)

    await sbx.commands.run(`touch ${sq(file)}`)
    await sbx.files.write(file, 'written through the SDK')
    await sbx.commands.run(`echo appended >> ${sq(file)}`)
    await sbx.files.remove(file)

    let timer
    await Promise.race([
      allArrived,
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`not all of ${wanted} arrived for ${rel} within ${EVENT_TIMEOUT_MS} ms; got ${JSON.stringify(events)}`)),
          EVENT_TIMEOUT_MS,
        )
      }),
    ]).finally(() => clearTimeout(timer))

    await handle.stop()
    perTestWatches.delete(handle)

    // Names are relative to the watched directory; nothing outside it shows.
    for (const e of events) {
      assert.ok(e.name === 'sub' || e.name.startsWith('sub/'), `unexpected event name ${JSON.stringify(e)}`)
      assert.ok(Object.values(FilesystemEventType).includes(e.type), `unknown event type ${JSON.stringify(e)}`)
    }
    const first = (t) => events.findIndex((e) => e.name === rel && e.type === t)
    assert.ok(
      first(FilesystemEventType.CREATE) < first(FilesystemEventType.WRITE) &&
        first(FilesystemEventType.WRITE) < first(FilesystemEventType.REMOVE),
      `expected create, then write, then remove: ${JSON.stringify(events)}`,
    )
    const removeIdx = first(FilesystemEventType.REMOVE)
    assert.equal(
      events.slice(removeIdx + 1).some((e) => e.name === rel && e.type !== FilesystemEventType.REMOVE),
      false,
      `no event for the file after its removal: ${JSON.stringify(events)}`,
    )
    assert.equal(exitErr, null, `watch ended with an error: ${exitErr}`)

    // After stop, no more events are delivered.
    const count = events.length
    await sbx.commands.run(`touch ${sq(`${dir}/sub/after-stop`)}`)
    // A second watch proves the event was emitted (so silence on the first is meaningful).
    const seen = []
    let resolveSeen
    const seenP = new Promise((resolve) => {
      resolveSeen = resolve
    })
    const h2 = await sbx.files.watchDir(dir, (ev) => {
      seen.push(ev)
      if (ev.name === 'late' && ev.type === FilesystemEventType.CREATE) resolveSeen()
    })
    perTestWatches.add(h2)
    await sbx.commands.run(`touch ${sq(`${dir}/late`)}`)
    let t2
    await Promise.race([
      seenP,
      new Promise((_, reject) => {
        t2 = setTimeout(() => reject(new Error(`second watch: no create for 'late'; got ${JSON.stringify(seen)}`)), EVENT_TIMEOUT_MS)
      }),
    ]).finally(() => clearTimeout(t2))
    await h2.stop()
    perTestWatches.delete(h2)
    assert.equal(events.length, count, `events after stop(): ${JSON.stringify(events.slice(count))}`)

    // Watching a path that does not exist is a FileNotFoundError.
    await rejectsWith(
      sbx.files.watchDir(`${dir}/missing`, () => {}),
      FileNotFoundError,
      'watchDir of a missing directory',
    )
  })

  test('5. a 50 MiB file round trips intact', { timeout: LARGE_TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const dir = freshDir('large')
    const path = `${dir}/big.bin`
    const size = 50 * 1024 * 1024
    const data = new Uint8Array(size)
    // A pattern that is not periodic in any small power of two.
    let x = 0x12345678
    for (let i = 0; i < size; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0
      data[i] = x >>> 24
    }
    const want = sha256(data)

    const t0 = performance.now()
    const info = await sbx.files.write(path, data.buffer, { requestTimeoutMs: 180_000 })
    const t1 = performance.now()
    assert.equal(info.path, path)
    const got = await sbx.files.read(path, { format: 'bytes', requestTimeoutMs: 180_000 })
    const t2 = performance.now()
    console.log(
      `50 MiB: write ${(t1 - t0).toFixed(0)} ms (${(50 / ((t1 - t0) / 1000)).toFixed(1)} MiB/s), ` +
        `read ${(t2 - t1).toFixed(0)} ms (${(50 / ((t2 - t1) / 1000)).toFixed(1)} MiB/s)`,
    )
    assert.ok(got instanceof Uint8Array)
    assert.equal(got.length, size)
    assert.equal(sha256(got), want, 'SHA-256 of the bytes read back')

    const inSandbox = await sbx.commands.run(`stat -c %s ${sq(path)} && sha256sum ${sq(path)}`)
    assert.equal(inSandbox.stdout, `${size}\n${want}  ${path}\n`, 'size and SHA-256 on the sandbox disk')
    const fi = await sbx.files.getInfo(path)
    assert.equal(fi.size, size)

    // A streamed read of the same file gives the same bytes.
    const streamed = await collectStream(await sbx.files.read(path, { format: 'stream' }))
    assert.equal(streamed.length, size)
    assert.equal(sha256(streamed), want, "SHA-256 of format 'stream'")
    await sbx.files.remove(dir)
  })

  describe('6. bad input', () => {
    test('reading a directory as a file is a 400 (InvalidArgumentError)', { timeout: TEST_TIMEOUT }, async () => {
      const sbx = await shared()
      const dir = freshDir('isdir')
      assert.equal(await sbx.files.makeDir(dir), true)
      for (const format of ['text', 'bytes', 'stream']) {
        const err = await rejectsWith(sbx.files.read(dir, { format }), InvalidArgumentError, `read(${dir}, ${format})`)
        assert.match(err.message, /director/i, `message should say it is a directory: ${err.message}`)
      }
      // Writing over a directory is refused too, and leaves it a directory.
      await rejectsWith(sbx.files.write(dir, 'x'), InvalidArgumentError, 'write over a directory')
      assert.equal((await sbx.files.getInfo(dir)).type, FileType.DIR)
      // A missing file is a FileNotFoundError, not a generic error.
      await rejectsWith(sbx.files.read(`${dir}/missing`), FileNotFoundError, 'read of a missing file')
    })

    test('a file used as a directory, an unknown user and an empty path are 400s', { timeout: TEST_TIMEOUT }, async () => {
      const sbx = await shared()
      const dir = freshDir('bad')
      await sbx.files.write(`${dir}/plain`, 'plain')
      await rejectsWith(sbx.files.write(`${dir}/plain/x`, 'x'), InvalidArgumentError, 'write below a regular file')
      await rejectsWith(sbx.files.list(`${dir}/plain`), InvalidArgumentError, 'list of a regular file')
      await rejectsWith(sbx.files.makeDir(`${dir}/plain`), InvalidArgumentError, 'makeDir over a regular file')
      await rejectsWith(sbx.files.watchDir(`${dir}/plain`, () => {}), InvalidArgumentError, 'watchDir of a regular file')
      assert.equal(await sbx.files.read(`${dir}/plain`), 'plain', 'the file is untouched')
      const userErr = await rejectsWith(
        sbx.files.read(`${dir}/plain`, { user: 'no-such-user' }),
        InvalidArgumentError,
        'read as an unknown user',
      )
      assert.match(userErr.message, /no-such-user/)
      await rejectsWith(sbx.files.read(''), InvalidArgumentError, "read('')")
    })

    test("'../../etc/shadow' is refused to user and is the sandbox's own file for root", { timeout: TEST_TIMEOUT }, async () => {
      const sbx = await shared()
      // The host has no account named 'user' (else the check below proves nothing).
      let hostShadow
      try {
        hostShadow = readFileSync('/etc/shadow', 'utf8')
      } catch {
        hostShadow = readFileSync('/etc/passwd', 'utf8') // not root here: every account is in passwd too
      }
      assert.doesNotMatch(hostShadow, /^user:/m, "the host must not have a 'user' account for this test to mean anything")

      const err = await rejectsWith(sbx.files.read('../../etc/shadow'), SandboxError, "read('../../etc/shadow') as user")
      assert.ok(!(err instanceof NotFoundError), `expected a permission error, got not-found: ${err.message}`)
      assert.ok(!(err instanceof InvalidArgumentError), `expected a permission error, got invalid-argument: ${err.message}`)
      assert.match(err.message, /^403\b/, `expected HTTP 403 (permission denied), got: ${err.message}`)

      const shadow = await sbx.files.read('../../etc/shadow', { user: 'root' })
      assert.match(shadow, /^user:/m, "the sandbox's /etc/shadow has the line for 'user'")
      assert.match(shadow, /^root:/m)
      // Byte for byte the file the sandbox sees.
      assert.equal(shadow, (await sbx.commands.run('cat /etc/shadow', { user: 'root' })).stdout)
    })

    test("a symlink to / lists the sandbox's root, never the host's", { timeout: TEST_TIMEOUT }, async () => {
      const sbx = await shared()
      const link = `${HOME}/rootlink-${randomUUID().slice(0, 8)}`
      await sbx.commands.run(`ln -s / ${sq(link)}`)

      const info = await sbx.files.getInfo(link)
      assert.equal(info.symlinkTarget, '/')
      assert.equal(info.type, FileType.DIR, 'a symlink to a directory has the type of its target')

      const entries = await sbx.files.list(link)
      const names = namesOf(entries)
      assert.ok(names.includes('.sbx'), `the sandbox's root has .sbx: ${JSON.stringify(names)}`)
      for (const e of entries) {
        assert.equal(e.path, `${link}/${e.name}`, 'entries are shown under the link as given')
      }
      // Exactly the sandbox's own listing of /.
      const inside = (await sbx.commands.run('ls -A /')).stdout.split('\n').filter(Boolean).sort()
      assert.deepEqual(names, inside, "files.list(link) equals `ls -A /` in the sandbox")
      // ... which is not the host's root.
      const host = readdirSync('/').sort()
      assert.ok(!host.includes('.sbx'), "the host's root has no .sbx (else the check above proves nothing)")
      assert.notDeepEqual(names, host)

      // Reading through the link is the sandbox's file too.
      const hostname = await sbx.files.read(`${link}/etc/hostname`)
      assert.equal(hostname, (await sbx.commands.run('cat /etc/hostname')).stdout)
      // And the link grants nothing: /etc/shadow through it is still refused to user.
      const err = await rejectsWith(sbx.files.read(`${link}/etc/shadow`), SandboxError, 'read of shadow through the link')
      assert.match(err.message, /^403\b/, `expected HTTP 403, got: ${err.message}`)

      // Removing the link removes the link, not the root.
      await sbx.files.remove(link)
      assert.equal(await sbx.files.exists(link), false)
      assert.equal(await sbx.files.exists('/etc/hostname'), true)
    })
  })
})
