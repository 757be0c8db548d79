// End-to-end test of sbx's volumes driven by the unmodified `e2b` JavaScript
// SDK: the Volume API (create, list, getInfo, destroy), the volume-content
// API with the volume's own token (no sandbox needed), and volumeMounts at
// create, one volume shared by two sandboxes.
//
// Run against a running sbx server:
//
//   SBX_URL=http://127.0.0.1:49982 SBX_API_KEY=e2b_... node --test volumes.test.js
//
// Same conventions as e2b.test.js: the run fails (never skips) without
// SBX_URL/SBX_API_KEY; every sandbox and volume is removed by the hooks.

import { describe, test, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'

import './env.js'

const { Sandbox, Volume, AuthenticationError, VolumeError, VolumeNotFoundError, VolumePathNotFoundError, VolumeFileType } = await import('e2b')

const RUN = randomUUID().slice(0, 8)
const TEST_TIMEOUT = 120_000
const sandboxes = []
const volumes = []

async function newVolume(suffix) {
  const vol = await Volume.create(`js-${RUN}-${suffix}`)
  volumes.push(vol.volumeId)
  return vol
}

async function newSandbox(opts) {
  const sbx = await Sandbox.create('base', { timeoutMs: 300_000, metadata: { suite: 'e2b-js', run: RUN }, ...opts })
  sandboxes.push(sbx)
  return sbx
}

after(async () => {
  for (const sbx of sandboxes) await sbx.kill().catch(() => {})
  for (const id of volumes) await Volume.destroy(id).catch(() => {})
})

describe('volumes', { timeout: 600_000 }, () => {
  test('create, list, getInfo, connect and destroy', { timeout: TEST_TIMEOUT }, async () => {
    const vol = await newVolume('meta')
    assert.match(vol.volumeId, /^[a-z0-9]{20}$/)
    assert.equal(vol.name, `js-${RUN}-meta`)
    assert.ok(vol.token.length > 20, 'a volume comes with its token')

    const listed = await Volume.list()
    assert.ok(listed.some((v) => v.volumeId === vol.volumeId && v.name === vol.name), 'list shows the new volume')

    const info = await Volume.getInfo(vol.volumeId)
    assert.equal(info.volumeId, vol.volumeId)
    assert.equal(info.name, vol.name)
    assert.equal(info.token, vol.token)

    const again = await Volume.connect(vol.volumeId)
    await vol.writeFile('/hello.txt', 'hi')
    assert.equal(await again.readFile('/hello.txt'), 'hi')

    await assert.rejects(Volume.create(vol.name), VolumeError, 'a second volume of the same name is refused')
    await assert.rejects(Volume.create('bad name!'), VolumeError, 'an invalid name is refused')

    assert.equal(await Volume.destroy(vol.volumeId), true)
    assert.equal(await Volume.destroy(vol.volumeId), false, 'destroying a gone volume answers 404')
    await assert.rejects(Volume.getInfo(vol.volumeId), VolumeNotFoundError)
  })

  test('content API: write, read, list, makeDir, getInfo, exists, updateMetadata, remove', { timeout: TEST_TIMEOUT }, async () => {
    const vol = await newVolume('content')
    const w = await vol.writeFile('/dir/sub/file.txt', 'hello volume')
    assert.equal(w.type, VolumeFileType.FILE)
    assert.equal(w.path, '/dir/sub/file.txt')
    assert.equal(w.size, 12)
    assert.ok(w.mtime instanceof Date)

    assert.equal(await vol.readFile('/dir/sub/file.txt'), 'hello volume')
    const bytes = await vol.readFile('/dir/sub/file.txt', { format: 'bytes' })
    assert.deepEqual(Buffer.from(bytes).toString(), 'hello volume')
    const blob = await vol.readFile('/dir/sub/file.txt', { format: 'blob' })
    assert.equal(await blob.text(), 'hello volume')
    const stream = await vol.readFile('/dir/sub/file.txt', { format: 'stream' })
    const chunks = []
    for await (const c of stream) chunks.push(Buffer.from(c))
    assert.equal(Buffer.concat(chunks).toString(), 'hello volume')

    await vol.writeFile('/dir/sub/file.txt', 'replaced')
    assert.equal(await vol.readFile('/dir/sub/file.txt'), 'replaced', 'writing an existing file overwrites it')

    const bin = new Uint8Array(256 * 1024).map((_, i) => i % 251)
    await vol.writeFile('/bin.dat', bin.buffer)
    assert.deepEqual(new Uint8Array(await vol.readFile('/bin.dat', { format: 'bytes' })), bin)

    const d = await vol.makeDir('/made')
    assert.equal(d.type, VolumeFileType.DIRECTORY)
    await assert.rejects(vol.makeDir('/made'), VolumeError, 'an existing directory is a conflict')
    await assert.rejects(vol.makeDir('/no/such/parent'), VolumePathNotFoundError)
    const deep = await vol.makeDir('/no/such/parent', { force: true })
    assert.equal(deep.path, '/no/such/parent')

    const top = await vol.list('/')
    assert.deepEqual(top.map((e) => e.name).sort(), ['bin.dat', 'dir', 'made', 'no'])
    const all = await vol.list('/', { depth: 3 })
    assert.ok(all.some((e) => e.path === '/dir/sub/file.txt' && e.type === VolumeFileType.FILE))

    const st = await vol.getInfo('/dir/sub/file.txt')
    assert.equal(st.name, 'file.txt')
    assert.equal(st.size, 8)
    assert.equal(st.uid, 1000, 'files belong to the sandboxes\u2019 default user')
    assert.equal(await vol.exists('/dir/sub/file.txt'), true)
    assert.equal(await vol.exists('/nope'), false)

    const md = await vol.updateMetadata('/dir/sub/file.txt', { mode: 0o600, uid: 1001, gid: 1002 })
    assert.equal(md.mode, 0o600)
    assert.equal(md.uid, 1001)
    assert.equal(md.gid, 1002)

    await vol.remove('/dir')
    assert.equal(await vol.exists('/dir/sub/file.txt'), false)
    await assert.rejects(vol.remove('/dir'), VolumePathNotFoundError)
    await assert.rejects(vol.readFile('/nope'), VolumePathNotFoundError)
    await assert.rejects(vol.list('/nope'), VolumePathNotFoundError)
    await assert.rejects(vol.readFile('/../../etc/passwd'), VolumeError, 'traversal is refused')

    const stranger = new Volume(vol.volumeId, vol.name, 'sbxv_not-the-token')
    await assert.rejects(stranger.readFile('/bin.dat'), AuthenticationError, 'a wrong token is refused (401)')
  })

  test('one volume mounted in two sandboxes; data outlives them; destroy while mounted is 409', { timeout: 300_000 }, async () => {
    const vol = await newVolume('shared')
    await vol.writeFile('/from-api.txt', 'api')
    const a = await newSandbox({ volumeMounts: { '/mnt/shared': vol } })
    const b = await newSandbox({ volumeMounts: { '/data': vol.name } })

    const info = await Sandbox.getInfo(a.sandboxId)
    assert.deepEqual(info.volumeMounts, [{ name: vol.name, path: '/mnt/shared' }])
    const page = await Sandbox.list({ query: { metadata: { run: RUN } } }).nextItems()
    const listedB = page.find((s) => s.sandboxId === b.sandboxId)
    assert.deepEqual(listedB?.volumeMounts, [{ name: vol.name, path: '/data' }], 'listings show the mounts too')

    assert.equal((await a.commands.run('cat /mnt/shared/from-api.txt')).stdout, 'api')
    // Writes through the content API while the sandboxes run are seen
    // at once, an overwrite of a file a sandbox has read included.
    await vol.writeFile('/from-api.txt', 'api, again')
    await vol.writeFile('/late.txt', 'late')
    assert.equal((await a.commands.run('cat /mnt/shared/from-api.txt /mnt/shared/late.txt')).stdout, 'api, againlate')
    await a.commands.run('echo -n from-a > /mnt/shared/a.txt')
    assert.equal((await b.commands.run('cat /data/a.txt')).stdout, 'from-a', 'a write in one sandbox is seen in the other')
    await b.commands.run('mkdir -p /data/dir && echo -n from-b > /data/dir/b.txt')
    assert.equal(await vol.readFile('/dir/b.txt'), 'from-b', 'and by the content API')
    const owner = await vol.getInfo('/dir/b.txt')
    assert.equal(owner.uid, 1000, 'the sandbox user owns what it writes')

    await assert.rejects(Volume.destroy(vol.volumeId), (err) => err instanceof VolumeError && /mounted/.test(err.message),
      'a volume mounted by a running sandbox cannot be destroyed')

    await a.kill()
    await b.kill()
    assert.equal(await vol.readFile('/a.txt'), 'from-a', 'the data outlives the sandboxes')

    const c = await newSandbox({ volumeMounts: { '/mnt/again': vol } })
    assert.equal((await c.commands.run('cat /mnt/again/dir/b.txt')).stdout, 'from-b')
    await c.kill()

    assert.equal(await Volume.destroy(vol.volumeId), true)
    await assert.rejects(Volume.getInfo(vol.volumeId), VolumeNotFoundError)
  })

  test('pause and resume keep the mount; a fork shares the volume', { timeout: 300_000 }, async () => {
    const vol = await newVolume('lifecycle')
    const sbx = await newSandbox({ volumeMounts: { '/vol': vol } })
    await sbx.commands.run('echo -n before > /vol/x.txt')
    assert.equal(await sbx.pause(), true)
    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.equal(info.state, 'paused')
    await assert.rejects(Volume.destroy(vol.volumeId), VolumeError, 'a paused sandbox holds its volumes too')
    await vol.writeFile('/while-paused.txt', 'paused')
    const back = await Sandbox.connect(sbx.sandboxId)
    assert.equal((await back.commands.run('cat /vol/x.txt /vol/while-paused.txt')).stdout, 'beforepaused')
    await back.commands.run('echo -n after > /vol/y.txt')
    assert.equal(await vol.readFile('/y.txt'), 'after', 'the mount works after resume')

    const forks = await back.fork({ count: 1 })
    assert.equal(forks.length, 1)
    assert.ok(!(forks[0] instanceof Error), `fork failed: ${forks[0]}`)
    const fork = forks[0]
    sandboxes.push(fork)
    await fork.commands.run('echo -n from-fork > /vol/fork.txt')
    assert.equal((await back.commands.run('cat /vol/fork.txt')).stdout, 'from-fork', 'a fork shares the volume, it does not copy it')
    assert.deepEqual((await Sandbox.getInfo(fork.sandboxId)).volumeMounts, [{ name: vol.name, path: '/vol' }])
    await fork.kill()
    await back.kill()
  })

  test('bad volume mounts are refused', { timeout: TEST_TIMEOUT }, async () => {
    const vol = await newVolume('badmount')
    for (const path of ['relative', '/', '/proc', '/proc/x', '/sys', '/dev/x', '/a/../b']) {
      await assert.rejects(newSandbox({ volumeMounts: { [path]: vol } }), /400|mount|path/i, `mount path ${path}`)
    }
    await assert.rejects(newSandbox({ volumeMounts: { '/mnt/x': `js-${RUN}-no-such-volume` } }), /not found|404/i)
  })
})
