// End-to-end test of sbx's template builds driven by the unmodified `e2b`
// package's template builder: Template()…, Template.build(), then
// Sandbox.create(thatTemplate).
//
//   SBX_URL=http://127.0.0.1:49982 SBX_API_KEY=e2b_... npm test

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

import { SBX_URL, SBX_API_KEY } from './env.js'

const { Template, Sandbox, BuildError } = await import('e2b')

const NAME = `e2b-js-tpl-${process.pid}`
const BUILD_TIMEOUT = 600_000

const dir = mkdtempSync(path.join(tmpdir(), 'sbx-e2b-tpl-'))
mkdirSync(path.join(dir, 'files'))
writeFileSync(path.join(dir, 'files', 'hello.txt'), 'hello from copy\n')

after(async () => {
  rmSync(dir, { recursive: true, force: true })
  for (const name of [NAME, `${NAME}-bad`]) {
    const res = await fetch(`${SBX_URL}/templates/${name}`, { method: 'DELETE', headers: { 'X-API-Key': SBX_API_KEY } })
    if (res.status !== 204 && res.status !== 404) console.error(`cleanup: delete template ${name}: ${res.status} ${await res.text()}`)
  }
})

function templateDef() {
  return Template({ fileContextPath: dir })
    .fromTemplate('base')
    .setEnvs({ GREETING: 'hi from env' })
    .runCmd('echo "$GREETING" > /tmp/greeting && id -un > /tmp/built-as')
    .copy('files/hello.txt', '/home/user/app/', { mode: 0o640 })
    .setWorkdir('/home/user/app')
    .runCmd('echo built > built.txt')
    .runCmd('id -un > /etc/built-by', { user: 'root' })
    .setStartCmd('sleep infinity', 'test -e /home/user/app/built.txt')
}

test('Template.build makes a template that Sandbox.create uses', { timeout: BUILD_TIMEOUT }, async () => {
  const logs = []
  const info = await Template.build(templateDef(), NAME, { onBuildLogs: (e) => logs.push(e.message) })
  assert.equal(info.templateId, NAME)
  assert.ok(info.buildId, 'a build id')
  assert.ok(logs.some((m) => /Step \d+\/\d+ : RUN echo built > built.txt/.test(m)), `build logs show the steps:\n${logs.join('\n')}`)

  const sbx = await Sandbox.create(NAME, { timeoutMs: 120_000 })
  try {
    const r = await sbx.commands.run(
      'cat /tmp/greeting /tmp/built-as /home/user/app/hello.txt /home/user/app/built.txt /etc/built-by; ' +
        'stat -c %U:%a /home/user/app/hello.txt; echo "$GREETING"; pwd; pgrep -x sleep >/dev/null && echo started',
    )
    assert.equal(
      r.stdout,
      'hi from env\nuser\nhello from copy\nbuilt\nroot\nuser:640\nhi from env\n/home/user/app\nstarted\n',
    )
  } finally {
    await sbx.kill()
  }

  // The same template again: every step comes from the cache.
  const again = []
  await Template.build(templateDef(), NAME, { onBuildLogs: (e) => again.push(e.message) })
  const cached = again.filter((m) => m.includes('CACHED')).length
  assert.equal(cached, 4, `4 cached steps (RUN, COPY, RUN, RUN) in:\n${again.join('\n')}`)
  assert.ok(again.some((m) => /0 run, 4 cached/.test(m)), again.join('\n'))
})

test('a failing step fails Template.build with its exit code', { timeout: BUILD_TIMEOUT }, async () => {
  // fromBaseImage() is E2B's base image: sbx's base template.
  const bad = Template({ fileContextPath: dir }).fromBaseImage().runCmd('echo about to fail; exit 3')
  const logs = []
  await assert.rejects(
    Template.build(bad, `${NAME}-bad`, { onBuildLogs: (e) => logs.push(e.message) }),
    (err) => err instanceof BuildError && /exit code 3/.test(err.message),
  )
  assert.ok(logs.includes('about to fail'), `the step's output is in the logs:\n${logs.join('\n')}`)
  assert.equal(await Template.exists(`${NAME}-bad`), false)
})
