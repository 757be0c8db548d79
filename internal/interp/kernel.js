// The JavaScript kernel of sbx's code interpreter: one Node.js process per
// context, run by the server (nodekernel.go). Requests come on stdin, one
// JSON object a line: {"id", "code", "env"}. Replies go to fd 3 as JSON
// lines shaped like Jupyter iopub messages: {"parent", "msg_type",
// "content"}. The process's own stdout and stderr are the server's log.
//
// Cells run through Node's REPL evaluator, so a context keeps its
// declarations from cell to cell, and top-level await works as in the
// node REPL. console.* and process.stdout/stderr.write inside a cell are
// the cell's output. SIGINT ends a cell that is waiting (top-level await
// of a promise that does not settle) with a KeyboardInterrupt error;
// synchronous code cannot be interrupted (Node's breakOnSigint did not
// survive the REPL's evaluator here), so the server restarts a kernel
// that does not come back from an interrupt.
'use strict'

const fs = require('node:fs')
const repl = require('node:repl')
const readline = require('node:readline')
const util = require('node:util')
const { PassThrough, Writable } = require('node:stream')

const out = fs.createWriteStream(null, { fd: 3 })
const send = (parent, msgType, content) => out.write(JSON.stringify({ parent, msg_type: msgType, content }) + '\n')

let current = null // id of the running cell
let curSaved = {} // env values the running cell replaced
let count = 0

const stream = (name) =>
  new Writable({
    write(chunk, _enc, cb) {
      if (current) send(current, 'stream', { name, text: chunk.toString() })
      cb()
    },
  })
const cellStdout = stream('stdout')
const cellStderr = stream('stderr')

const server = repl.start({
  input: new PassThrough(),
  output: new Writable({ write: (_c, _e, cb) => cb() }), // the REPL's own echo and prompts
  terminal: false,
  useGlobal: false,
  ignoreUndefined: true,
  preview: false,
})
const ctx = server.context
// The REPL runs its evaluator in a domain and reports what a cell throws
// (synchronously or by a rejected top-level await) to the domain, not to
// the evaluator's callback.
server._domain.on('error', (err) => {
  if (!current) return
  const id = current
  fail(id, err)
  finish(id, curSaved)
})
ctx.console = new console.Console({ stdout: cellStdout, stderr: cellStderr })
for (const [name, w] of [['stdout', cellStdout], ['stderr', cellStderr]]) {
  process[name].write = (chunk, enc, cb) => w.write(chunk, enc, cb)
}

function finish(id, saved) {
  if (current !== id) return
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k]
    else process.env[k] = v
  }
  current = null
  send(id, 'status', { execution_state: 'idle' })
  next()
}

function fail(id, err) {
  if (current !== id) return
  if (err instanceof repl.Recoverable && err.err) err = err.err // incomplete input
  // Errors made in the context come from another realm: not instanceof
  // this realm's Error.
  if (err !== null && typeof err === 'object' && typeof err.stack === 'string') {
    send(id, 'error', { ename: String(err.name || 'Error'), evalue: String(err.message ?? ''), traceback: [err.stack] })
  } else {
    send(id, 'error', { ename: 'Error', evalue: util.inspect(err), traceback: ['Uncaught ' + util.inspect(err)] })
  }
}

const queue = []
function next() {
  if (current || queue.length === 0) return
  const { id, code, env } = queue.shift()
  current = id
  count++
  send(id, 'status', { execution_state: 'busy' })
  send(id, 'execute_input', { code, execution_count: count })
  const saved = {}
  for (const [k, v] of Object.entries(env || {})) {
    saved[k] = process.env[k]
    process.env[k] = v
  }
  curSaved = saved
  try {
    server.eval(code, ctx, 'cell', (err, result) => {
      if (err) fail(id, err)
      else if (result !== undefined) {
        send(id, 'execute_result', {
          execution_count: count,
          data: { 'text/plain': typeof result === 'string' ? util.inspect(result) : util.inspect(result, { colors: false }) },
        })
      }
      finish(id, saved)
    })
  } catch (err) {
    fail(id, err)
    finish(id, saved)
  }
}

process.on('SIGINT', () => {
  if (!current) return
  const id = current
  fail(id, Object.assign(new Error('Script execution was interrupted'), { name: 'KeyboardInterrupt' }))
  finish(id, curSaved)
})
process.on('uncaughtException', (err) => {
  if (current) send(current, 'stream', { name: 'stderr', text: 'Uncaught ' + (err && err.stack ? err.stack : String(err)) + '\n' })
})
process.on('unhandledRejection', (err) => {
  if (current) send(current, 'stream', { name: 'stderr', text: 'Unhandled rejection: ' + (err && err.stack ? err.stack : String(err)) + '\n' })
})

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  queue.push(JSON.parse(line))
  next()
}).on('close', () => process.exit(0))

send('', 'status', { execution_state: 'starting' })
