// End-to-end test of template tags driven by the unmodified `e2b` package:
// Template.build(t, 'name:tag') and its `tags` option, Sandbox.create of
// 'name:tag' and of 'name' (the default tag), Template.assignTags,
// removeTags and getTags, and bad input to the tag routes.
//
//   SBX_URL=http://127.0.0.1:49982 SBX_API_KEY=e2b_... node --test tags.test.js

import { test, after } from 'node:test'
import assert from 'node:assert/strict'

import { SBX_URL, SBX_API_KEY } from './env.js'

const { Template, Sandbox } = await import('e2b')

const NAME = `e2b-js-tags-${process.pid}`
const BUILD_TIMEOUT = 600_000

after(async () => {
  const res = await fetch(`${SBX_URL}/templates/${NAME}`, { method: 'DELETE', headers: { 'X-API-Key': SBX_API_KEY } })
  if (res.status !== 204 && res.status !== 404) console.error(`cleanup: delete template ${NAME}: ${res.status} ${await res.text()}`)
})

// The smallest build: one ENV step over the base template, its value
// telling the builds apart.
function marked(mark) {
  return Template().fromTemplate('base').setEnvs({ TAG_MARK: mark })
}

async function markOf(ref) {
  const sbx = await Sandbox.create(ref, { timeoutMs: 60_000 })
  try {
    const r = await sbx.commands.run('echo "$TAG_MARK"')
    return r.stdout.trim()
  } finally {
    await sbx.kill()
  }
}

function api(method, path, body, { key = SBX_API_KEY, raw } = {}) {
  const headers = { 'X-API-Key': key }
  if (body !== undefined || raw !== undefined) headers['Content-Type'] = 'application/json'
  return fetch(`${SBX_URL}${path}`, { method, headers, body: raw !== undefined ? raw : JSON.stringify(body) })
}

async function assertError(res, status) {
  const text = await res.text()
  assert.equal(res.status, status, text)
  const body = JSON.parse(text)
  assert.equal(body.code, status, text)
  assert.equal(typeof body.message, 'string', text)
}

test('name:tag builds, creates by tag and by name, assign and remove tags', { timeout: BUILD_TIMEOUT }, async () => {
  const v1 = await Template.build(marked('v1'), `${NAME}:v1`)
  assert.equal(v1.templateId, NAME)
  assert.deepEqual(v1.tags, ['v1'])
  const v2 = await Template.build(marked('v2'), `${NAME}:v2`, { tags: ['stable', 'v2'] })
  assert.deepEqual(v2.tags, ['v2', 'stable'])
  assert.notEqual(v2.buildId, v1.buildId)

  // Only tags so far: the name exists, its default tag does not.
  assert.equal(await Template.exists(NAME), true)
  await assert.rejects(Sandbox.create(NAME, { timeoutMs: 60_000 }), /not found/i)

  const def = await Template.build(marked('default'), NAME)
  assert.deepEqual(def.tags, ['default'])

  assert.equal(await Template.exists(`${NAME}:v1`), true)
  assert.equal(await Template.exists(`${NAME}:nope`), false)
  assert.equal(await markOf(`${NAME}:v1`), 'v1')
  assert.equal(await markOf(`${NAME}:v2`), 'v2')
  assert.equal(await markOf(`${NAME}:stable`), 'v2')
  assert.equal(await markOf(NAME), 'default')
  assert.equal(await markOf(`${NAME}:default`), 'default')

  let tags = await Template.getTags(NAME)
  assert.deepEqual(tags.map((t) => t.tag), ['default', 'stable', 'v1', 'v2'])
  const byTag = Object.fromEntries(tags.map((t) => [t.tag, t]))
  assert.equal(byTag.v1.buildId, v1.buildId)
  assert.equal(byTag.v2.buildId, v2.buildId)
  assert.equal(byTag.stable.buildId, v2.buildId)
  assert.equal(byTag.default.buildId, def.buildId)
  for (const t of tags) assert.ok(t.createdAt instanceof Date && !isNaN(t.createdAt), `createdAt of ${t.tag}`)

  // Assign: prod points at v1's build; then at v2's, replacing it.
  const assigned = await Template.assignTags(`${NAME}:v1`, ['prod', 'prod'])
  assert.deepEqual(assigned, { buildId: v1.buildId, tags: ['prod'] })
  assert.equal(await markOf(`${NAME}:prod`), 'v1')
  const moved = await Template.assignTags(`${NAME}:v2`, 'prod')
  assert.equal(moved.buildId, v2.buildId)
  assert.equal(await markOf(`${NAME}:prod`), 'v2')
  // The default tag can be moved too.
  await Template.assignTags(`${NAME}:v1`, 'default')
  assert.equal(await markOf(NAME), 'v1')

  await Template.removeTags(NAME, ['prod', 'stable'])
  tags = await Template.getTags(NAME)
  assert.deepEqual(tags.map((t) => t.tag), ['default', 'v1', 'v2'])
  await assert.rejects(Sandbox.create(`${NAME}:prod`, { timeoutMs: 60_000 }), /not found/i)
  assert.equal(await markOf(`${NAME}:v2`), 'v2', 'removing a tag leaves the build its other tags point at')

  // A tag a sandbox runs from keeps its build while the sandbox lives:
  // moving or removing it is a conflict, as a rebuild of a template.
  const running = await Sandbox.create(`${NAME}:v2`, { timeoutMs: 60_000 })
  try {
    await assert.rejects(Template.assignTags(`${NAME}:v1`, 'v2'), /used by 1 sandbox/)
    await assert.rejects(Template.removeTags(NAME, 'v2'), /used by 1 sandbox/)
    const res = await api('POST', '/templates/tags', { target: `${NAME}:v1`, tags: ['v2'] })
    await assertError(res, 409)
  } finally {
    await running.kill()
  }
  assert.equal(await markOf(`${NAME}:v2`), 'v2')

  // A rebuild of a tag replaces that tag's build only.
  const v1b = await Template.build(marked('v1b'), `${NAME}:v1`)
  assert.equal(await markOf(`${NAME}:v1`), 'v1b')
  assert.equal(await markOf(`${NAME}:v2`), 'v2')
  tags = await Template.getTags(NAME)
  assert.equal(tags.find((t) => t.tag === 'v1').buildId, v1b.buildId)
})

test('bad tags and unknown templates are refused', async () => {
  const badRef = `${NAME}:Bad Tag`
  await assert.rejects(Template.build(marked('x'), `${NAME}:UPPER`), /invalid template tag/)
  await assert.rejects(Template.build(marked('x'), NAME, { tags: ['no/slash'] }), /invalid template tag/)
  await assert.rejects(Template.build(marked('x'), `${NAME}:`), /invalid template tag/)
  await assert.rejects(Template.assignTags(`${NAME}:v1`, 'Bad Tag'), /invalid template tag/)
  await assert.rejects(Template.assignTags(badRef, 'ok'), /invalid template tag/)
  await assert.rejects(Template.assignTags(`${NAME}:nope`, 'ok'), /not found/)
  await assert.rejects(Template.assignTags(`no-such-${NAME}:v1`, 'ok'), /not found/)
  await assert.rejects(Template.removeTags(NAME, 'nope'), /no tag/)
  await assert.rejects(Template.removeTags(`no-such-${NAME}`, 'v1'), /no tag/)
  await assert.rejects(Template.getTags(`no-such-${NAME}`), /not found/)
  await assert.rejects(Sandbox.create(`${NAME}:nope`, { timeoutMs: 60_000 }), /not found/i)
  await assert.rejects(Sandbox.create(`${NAME}:Bad`, { timeoutMs: 60_000 }), /invalid template tag/)

  // The routes themselves: the E2B error shape on every refusal.
  await assertError(await api('POST', '/templates/tags', undefined, { raw: '{"target":' }), 400)
  await assertError(await api('POST', '/templates/tags', { target: `${NAME}:v1`, tags: [] }), 400)
  await assertError(await api('POST', '/templates/tags', { tags: ['x'] }), 400)
  await assertError(await api('POST', '/templates/tags', { target: '../etc:v1', tags: ['x'] }), 400)
  await assertError(await api('POST', '/templates/tags', { target: `${NAME}:v1`, tags: ['../x'] }), 400)
  await assertError(await api('DELETE', '/templates/tags', undefined, { raw: 'nope' }), 400)
  await assertError(await api('DELETE', '/templates/tags', { name: NAME, tags: ['..'] }), 400)
  await assertError(await api('DELETE', '/templates/tags', { tags: ['v1'] }), 400)
  await assertError(await api('POST', '/templates/tags', { target: `${NAME}:v1`, tags: ['a'.repeat(2 << 20)] }), 413)
  await assertError(await api('POST', '/templates/tags', { target: `${NAME}:v1`, tags: ['x'] }, { key: 'e2b_wrong' }), 401)
  await assertError(await api('DELETE', '/templates/tags', { name: NAME, tags: ['v1'] }, { key: 'e2b_wrong' }), 401)
  await assertError(await api('GET', `/templates/${NAME}/tags`, undefined, { key: 'e2b_wrong' }), 401)
  await assertError(await api('GET', '/templates/..%2F..%2Fetc/tags'), 404)
  await assertError(await api('GET', `/templates/${NAME}/nothing`), 404)

  // Nothing above changed the tags.
  const tags = await Template.getTags(NAME)
  assert.deepEqual(tags.map((t) => t.tag), ['default', 'v1', 'v2'])
})

test('deleting a template removes every tag', async () => {
  const res = await api('DELETE', `/templates/${NAME}`)
  assert.equal(res.status, 204, await res.text())
  await assert.rejects(Template.getTags(NAME), /not found/)
  assert.equal(await Template.exists(NAME), false)
  await assert.rejects(Sandbox.create(`${NAME}:v2`, { timeoutMs: 60_000 }), /not found/i)
})
