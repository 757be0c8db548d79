// End-to-end test of sbx's code interpreter driven by the unmodified
// `@e2b/code-interpreter` npm package (2.8.0): Sandbox.create() from its
// default template (code-interpreter-v1), runCode in stateful contexts,
// rich results (PNG and chart from matplotlib, HTML and data from pandas),
// JavaScript, TypeScript, bash and R contexts, box plots, Sandbox.connect,
// streaming callbacks, errors with tracebacks, contexts, timeouts, a dead
// kernel and bad input.
//
// Run by tests/e2e (TestCodeInterpreter), which builds the template first
// with `sbx template build code-interpreter-v1`; by hand:
//
//   SBX_URL=http://127.0.0.1:49982 SBX_API_KEY=e2b_... node --test codeinterpreter.spec.js
//
// Not named *.test.js: `npm test` (TestE2BJavaScriptSDK) needs only the
// base template and does not run it.

import { describe, test, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'

import './env.js'

const { Sandbox, NotFoundError, SandboxError } = await import('@e2b/code-interpreter')

const SUITE = 'e2b-js-code-interpreter'
const RUN = randomUUID()
const TEST_TIMEOUT = 120_000

let sharedPromise
function shared() {
  sharedPromise ??= (async () => {
    const start = Date.now()
    const sbx = await Sandbox.create({ timeoutMs: 300_000, metadata: { suite: SUITE, run: RUN } })
    const first = await sbx.runCode('1+1')
    console.log(`create -> first result: ${Date.now() - start} ms`)
    assert.equal(first.text, '2')
    return sbx
  })()
  return sharedPromise
}

after(async () => {
  if (sharedPromise) {
    const sbx = await sharedPromise.catch(() => undefined)
    await sbx?.kill().catch((err) => console.error(`cleanup: ${err}`))
  }
})

describe('code interpreter', { timeout: TEST_TIMEOUT * 10 }, () => {
  test('Sandbox.create() uses code-interpreter-v1 and state persists', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const info = await sbx.getInfo()
    assert.equal(info.templateId, 'code-interpreter-v1')
    let ex = await sbx.runCode('x = 41')
    assert.equal(ex.error, undefined)
    assert.deepEqual(ex.results, [])
    ex = await sbx.runCode('x + 1')
    assert.equal(ex.text, '42')
    assert.equal(ex.results.length, 1)
    assert.equal(ex.results[0].isMainResult, true)
    assert.ok(ex.executionCount >= 2, `execution count ${ex.executionCount}`)
  })

  test('warm round trip of 1+1', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const times = []
    for (let i = 0; i < 30; i++) {
      const t0 = performance.now()
      const ex = await sbx.runCode('1+1')
      times.push(performance.now() - t0)
      assert.equal(ex.text, '2')
    }
    times.sort((a, b) => a - b)
    console.log(`runCode('1+1'): p50 ${times[15].toFixed(1)} ms, max ${times[29].toFixed(1)} ms`)
  })

  test('matplotlib plot: a PNG and a line chart', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const ex = await sbx.runCode(`
import matplotlib.pyplot as plt
plt.figure()
plt.plot([1, 2, 3], [4, 5, 6], label="sales")
plt.title("Sales")
plt.xlabel("month")
plt.show()
`)
    assert.equal(ex.error, undefined, JSON.stringify(ex.error))
    assert.equal(ex.results.length, 1)
    const r = ex.results[0]
    assert.equal(r.isMainResult, false)
    assert.ok(r.png && Buffer.from(r.png, 'base64').subarray(1, 4).toString() === 'PNG', 'a PNG')
    assert.ok(r.formats().includes('png'))
    assert.equal(r.chart.type, 'line')
    assert.equal(r.chart.title, 'Sales')
    assert.equal(r.chart.x_label, 'month')
    assert.deepEqual(r.chart.elements[0].points, [[1, 4], [2, 5], [3, 6]])
    assert.equal(r.chart.elements[0].label, 'sales')
  })

  test('bar, pie and two axes (superchart)', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    let ex = await sbx.runCode(`
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.bar(["a", "b"], [3, 5], label="books")
ax.set_title("Bars")
plt.show()
fig, ax = plt.subplots()
ax.pie([1, 3], labels=["x", "y"])
plt.show()
`)
    assert.equal(ex.error, undefined, JSON.stringify(ex.error))
    assert.equal(ex.results.length, 2)
    const [bar, pie] = ex.results.map((r) => r.chart)
    assert.equal(bar.type, 'bar')
    assert.deepEqual(bar.elements.map((e) => [e.label, e.value, e.group]), [['a', 3, 'books'], ['b', 5, 'books']])
    assert.equal(pie.type, 'pie')
    assert.deepEqual(pie.elements.map((e) => [e.label, Math.round(e.angle)]), [['x', 90], ['y', 270]])
    ex = await sbx.runCode(`
fig, (a1, a2) = plt.subplots(1, 2)
a1.plot([0, 1], [0, 1])
a2.scatter([1, 2], [3, 4])
fig.suptitle("Both")
plt.show()
`)
    const chart = ex.results[0].chart
    assert.equal(chart.type, 'superchart')
    assert.equal(chart.title, 'Both')
    assert.deepEqual(chart.elements.map((c) => c.type), ['line', 'scatter'])
  })

  test('pandas DataFrame: HTML and data', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const ex = await sbx.runCode(`
import pandas as pd
pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
`)
    assert.equal(ex.error, undefined, JSON.stringify(ex.error))
    const r = ex.results[0]
    assert.equal(r.isMainResult, true)
    assert.match(r.html, /<table/)
    assert.deepEqual(r.data, { a: [1, 2], b: ['x', 'y'] })
  })

  test('other formats: markdown, latex, json, display() in order', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const ex = await sbx.runCode(`
from IPython.display import display, Markdown, Latex, JSON, HTML
display(Markdown("# hi"))
display(Latex(r"$x^2$"))
display(JSON({"k": 1}))
HTML("<b>main</b>")
`)
    assert.equal(ex.error, undefined, JSON.stringify(ex.error))
    assert.deepEqual(ex.results.map((r) => r.isMainResult), [false, false, false, true])
    assert.equal(ex.results[0].markdown, '# hi')
    assert.equal(ex.results[1].latex, '$x^2$')
    assert.deepEqual(ex.results[2].json, { k: 1 })
    assert.equal(ex.results[3].html, '<b>main</b>')
  })

  test('streaming callbacks arrive in order, as they happen', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const events = []
    let firstAt
    const start = Date.now()
    const ex = await sbx.runCode(
      `
import sys, time
print("one", flush=True)
time.sleep(1)
print("two", file=sys.stderr, flush=True)
3
`,
      {
        onStdout: (m) => {
          firstAt ??= Date.now()
          events.push(['stdout', m.line])
        },
        onStderr: (m) => events.push(['stderr', m.line]),
        onResult: (r) => events.push(['result', r.text]),
      },
    )
    const end = Date.now()
    assert.deepEqual(events, [['stdout', 'one\n'], ['stderr', 'two\n'], ['result', '3']])
    assert.ok(end - firstAt >= 900, `stdout arrived ${end - firstAt} ms before the end: not streamed`)
    assert.ok(firstAt - start < end - start - 900)
    assert.deepEqual(ex.logs, { stdout: ['one\n'], stderr: ['two\n'] })
  })

  test('an error with its traceback', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    let seen
    const ex = await sbx.runCode('def f():\n    raise ValueError("bad value")\nf()', { onError: (e) => (seen = e) })
    assert.equal(ex.error.name, 'ValueError')
    assert.equal(ex.error.value, 'bad value')
    // IPython's traceback, colours (ANSI escapes) and all, as E2B's.
    const plain = ex.error.traceback.replace(/\x1b\[[0-9;]*m/g, '')
    assert.match(plain, /Traceback \(most recent call last\)/)
    assert.match(plain, /----> 2 +raise ValueError\("bad value"\)/)
    assert.match(plain, /ValueError: bad value$/)
    assert.equal(seen.name, 'ValueError')
    // The context goes on.
    assert.equal((await sbx.runCode('x')).text, '41')
  })

  test('contexts: create with cwd, list, envs, restart, remove', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const ctx = await sbx.createCodeContext({ cwd: '/tmp' })
    assert.equal(ctx.language, 'python')
    assert.equal(ctx.cwd, '/tmp')
    assert.equal((await sbx.runCode('import os; os.getcwd()', { context: ctx })).text, "'/tmp'")
    await sbx.runCode('y = 7', { context: ctx })
    assert.equal((await sbx.runCode('y', { context: ctx })).text, '7')
    // The default context does not see it.
    assert.equal((await sbx.runCode('"y" in dir()')).text, 'False')
    assert.equal((await sbx.runCode('import os; os.environ.get("GREETING")', { context: ctx, envs: { GREETING: 'hi' } })).text, "'hi'")
    assert.equal((await sbx.runCode('os.environ.get("GREETING", "unset")', { context: ctx })).text, "'unset'")
    const list = await sbx.listCodeContexts()
    assert.ok(list.some((c) => c.id === ctx.id))
    await sbx.restartCodeContext(ctx)
    assert.equal((await sbx.runCode('"y" in dir()', { context: ctx })).text, 'False')
    await sbx.removeCodeContext(ctx.id)
    assert.ok(!(await sbx.listCodeContexts()).some((c) => c.id === ctx.id))
    await assert.rejects(sbx.runCode('1', { context: ctx }), NotFoundError)
  })

  test('JavaScript: a context with state, top-level await, errors', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const ctx = await sbx.createCodeContext({ language: 'javascript' })
    assert.equal(ctx.language, 'javascript')
    await sbx.runCode('const greeting = "hello"', { context: ctx })
    const out = []
    let ex = await sbx.runCode('console.log(greeting); const n = await Promise.resolve(20); n + 22', {
      context: ctx,
      onStdout: (m) => out.push(m.line),
    })
    assert.equal(ex.error, undefined, JSON.stringify(ex.error))
    assert.deepEqual(out, ['hello\n'])
    assert.equal(ex.text, '42')
    assert.equal((await sbx.runCode('n', { context: ctx })).text, '20')
    ex = await sbx.runCode('null.x', { context: ctx })
    assert.equal(ex.error.name, 'TypeError')
    assert.match(ex.error.traceback, /TypeError/)
    // language alone runs in that language's default context.
    assert.equal((await sbx.runCode('typeof process.versions.node', { language: 'js' })).text, "'string'")
    await sbx.removeCodeContext(ctx)
  })

  test('TypeScript: types removed, state, enums, top-level await, syntax errors', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const ctx = await sbx.createCodeContext({ language: 'typescript', cwd: '/tmp' })
    assert.equal(ctx.language, 'typescript')
    await sbx.runCode('interface P { n: number }\nconst p: P = { n: 20 }\nenum E { A, B }', { context: ctx })
    const out = []
    let ex = await sbx.runCode('const m: number = await Promise.resolve(22)\nconsole.log(process.cwd())\np.n + m', { context: ctx, onStdout: (o) => out.push(o.line) })
    assert.equal(ex.error, undefined, JSON.stringify(ex.error))
    assert.equal(ex.text, '42')
    assert.deepEqual(out, ['/tmp\n'])
    assert.equal((await sbx.runCode('E.B', { context: ctx })).text, '1')
    ex = await sbx.runCode('const broken: = 1', { context: ctx })
    assert.equal(ex.error.name, 'SyntaxError')
    assert.equal((await sbx.runCode('m', { context: ctx })).text, '22')
    assert.equal((await sbx.runCode('process.env.RUN_ENV', { context: ctx, envs: { RUN_ENV: 'ts' } })).text, "'ts'")
    assert.equal((await sbx.runCode('const t: string = "ts"; t', { language: 'ts' })).text, "'ts'")
    await sbx.removeCodeContext(ctx)
  })

  test('bash: a stateful shell, cwd, envs, exit status as an error', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const ctx = await sbx.createCodeContext({ language: 'bash', cwd: '/tmp' })
    assert.equal(ctx.language, 'bash')
    await sbx.runCode('N=41; mkdir -p d && cd d', { context: ctx })
    const out = []
    let ex = await sbx.runCode('echo $((N + 1)); pwd; echo warn >&2', { context: ctx, onStdout: (o) => out.push(o.line) })
    assert.equal(ex.error, undefined, JSON.stringify(ex.error))
    assert.equal(out.join(''), '42\n/tmp/d\n')
    assert.deepEqual(ex.logs.stderr, ['warn\n'])
    ex = await sbx.runCode('echo "$GREETING"', { context: ctx, envs: { GREETING: 'hi' } })
    assert.deepEqual(ex.logs.stdout, ['hi\n'])
    ex = await sbx.runCode('echo "${GREETING-unset}"; exit_with() { return $1; }; exit_with 3', { context: ctx })
    assert.deepEqual(ex.logs.stdout, ['unset\n'])
    assert.equal(ex.error.name, 'ExitStatus')
    assert.equal(ex.error.value, 'exit status 3')
    assert.deepEqual((await sbx.runCode('echo $N', { language: 'bash' })).logs.stdout, ['\n'])
    await sbx.removeCodeContext(ctx)
  })

  test('R: IRkernel with state, plots, data frames, errors, envs', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const ctx = await sbx.createCodeContext({ language: 'r', cwd: '/tmp' })
    assert.equal(ctx.language, 'r')
    await sbx.runCode('x <- 41', { context: ctx })
    let ex = await sbx.runCode('x + 1', { context: ctx })
    assert.equal(ex.error, undefined, JSON.stringify(ex.error))
    // IRkernel sends values as display_data, so they are results but not
    // the main one (execution.text), as in E2B's own R kernel.
    assert.equal(ex.results.length, 1)
    assert.equal(ex.results[0].text, '[1] 42')
    ex = await sbx.runCode('cat(getwd(), "\\n")', { context: ctx })
    assert.deepEqual(ex.logs.stdout, ['/tmp \n'])
    ex = await sbx.runCode('plot(1:10)', { context: ctx })
    assert.equal(ex.results.length, 1)
    assert.ok(Buffer.from(ex.results[0].png, 'base64').subarray(1, 4).toString() === 'PNG', 'a PNG')
    ex = await sbx.runCode('data.frame(a = 1:2, b = c("u", "v"))', { context: ctx })
    assert.match(ex.results[0].html, /<table/)
    ex = await sbx.runCode('stop("boom")', { context: ctx })
    assert.equal(ex.error.name, 'ERROR')
    assert.match(ex.error.value, /boom/)
    assert.equal((await sbx.runCode('x', { context: ctx })).results[0].text, '[1] 41')
    ex = await sbx.runCode('Sys.getenv("GREETING")', { context: ctx, envs: { GREETING: 'hi' } })
    assert.equal(ex.results[0].text, '[1] "hi"')
    ex = await sbx.runCode('Sys.getenv("GREETING", unset = "unset")', { context: ctx })
    assert.equal(ex.results[0].text, '[1] "unset"')
    // language alone runs in R's default context, not ctx.
    assert.equal((await sbx.runCode('exists("x")', { language: 'r' })).results[0].text, '[1] FALSE')
    await sbx.restartCodeContext(ctx)
    assert.equal((await sbx.runCode('exists("x")', { context: ctx })).results[0].text, '[1] FALSE')
    await sbx.removeCodeContext(ctx)
  })

  test('box plot: a box_and_whisker chart', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const ex = await sbx.runCode("import matplotlib.pyplot as plt\nplt.boxplot([[1, 2, 3, 4, 5, 40], [10, 20, 30, 40, 50]], labels=['A', 'B'])\nplt.title('bw')\nplt.show()")
    assert.equal(ex.error, undefined, JSON.stringify(ex.error))
    const chart = ex.results[0].chart
    assert.equal(chart.type, 'box_and_whisker')
    assert.equal(chart.title, 'bw')
    assert.deepEqual(chart.elements.map((e) => [e.label, e.min, e.first_quartile, e.median, e.third_quartile, e.max, e.outliers]), [
      ['A', 1, 2.25, 3.5, 4.75, 5, [40]],
      ['B', 10, 20, 30, 40, 50, []],
    ])
  })

  test('Sandbox.connect keeps the contexts and their state', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    await sbx.runCode('kept = "across connect"')
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal((await again.runCode('kept')).text, "'across connect'")
  })

  test('timeoutMs interrupts the cell; the context stays usable', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const ctx = await sbx.createCodeContext()
    await sbx.runCode('z = 1', { context: ctx })
    await assert.rejects(sbx.runCode('import time\ntime.sleep(600)', { context: ctx, timeoutMs: 1000 }), /timed out/i)
    const t0 = Date.now()
    assert.equal((await sbx.runCode('z + 1', { context: ctx })).text, '2')
    assert.ok(Date.now() - t0 < 15_000)
    await sbx.removeCodeContext(ctx)
  })

  test('a kernel that dies: a clear error, then restart', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const ctx = await sbx.createCodeContext()
    let ex = await sbx.runCode('import os\nos.kill(os.getpid(), 9)', { context: ctx })
    assert.equal(ex.error.name, 'KernelDied')
    assert.match(ex.error.value, /restart/)
    ex = await sbx.runCode('1', { context: ctx })
    assert.equal(ex.error.name, 'KernelDied')
    await sbx.restartCodeContext(ctx)
    assert.equal((await sbx.runCode('1', { context: ctx })).text, '1')
    await sbx.removeCodeContext(ctx)
  })

  test('large output is cut with a note', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    const ex = await sbx.runCode("import sys\nfor i in range(1100):\n    sys.stdout.write('x' * 100000)\nsys.stdout.flush()")
    const total = ex.logs.stdout.reduce((n, s) => n + s.length, 0)
    assert.ok(total < 100_000_000, `${total} bytes of stdout`)
    assert.match(ex.logs.stderr.at(-1), /output truncated/)
    assert.equal((await sbx.runCode('1')).text, '1')
  })

  test('bad input: unknown language and context, too large', { timeout: TEST_TIMEOUT }, async () => {
    const sbx = await shared()
    await assert.rejects(sbx.runCode('1', { language: 'cobol' }), (err) => err instanceof SandboxError && /400/.test(err.message))
    await assert.rejects(sbx.createCodeContext({ language: 'cobol' }), (err) => err instanceof SandboxError && /400/.test(err.message))
    await assert.rejects(sbx.runCode('1', { context: { id: 'nope' } }), (err) => err instanceof NotFoundError && /nope/.test(err.message))
    await assert.rejects(sbx.restartCodeContext('nope'), NotFoundError)
    await assert.rejects(sbx.removeCodeContext('nope'), NotFoundError)
    await assert.rejects(sbx.runCode('#' + 'x'.repeat(9 << 20)), (err) => err instanceof SandboxError && /413/.test(err.message))
    // Malformed JSON, which the SDK never sends: straight to the port.
    const res = await fetch(`${process.env.E2B_SANDBOX_URL}/execute`, {
      method: 'POST',
      headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '49999', 'Content-Type': 'application/json' },
      body: '{"code": ',
    })
    assert.equal(res.status, 400)
    assert.match(await res.text(), /malformed JSON/)
  })
})
