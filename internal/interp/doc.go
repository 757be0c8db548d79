// Package interp is the code interpreter's server: what E2B's
// @e2b/code-interpreter SDK talks to on port 49999 of a sandbox made from
// the code-interpreter-v1 template. It runs as `sbx-agent code-interpreter`
// (the template's start command), beside the agent, as the sandbox's
// default user.
//
// # Overview
//
// A [Server] holds contexts: each is one kernel process with its own state
// and working directory. Python contexts run pykernel.py, a small process
// of sbx's own that runs cells through IPython's InteractiveShell and
// speaks JSON lines over pipes (pykernel.go); JavaScript and TypeScript
// contexts a Node.js process (kernel.js), bash contexts a bash process, R
// contexts IRkernel, spoken to over the Jupyter messaging protocol on ZMTP
// over Unix sockets (a minimal ZeroMQ peer, see zmtp.go). The server
// speaks HTTP to the SDK:
//
//	GET    /health                 "OK"
//	POST   /execute                run code; JSON lines as the kernel sends output
//	POST   /contexts               create a context {language, cwd}
//	GET    /contexts               list them
//	DELETE /contexts/{id}          remove one (its kernel ends)
//	POST   /contexts/{id}/restart  replace its kernel with a fresh one
//
// Each Python kernel runs startup.py first, which adds the e2b/chart
// (matplotlib figures as the SDK's chart types) and e2b/data (pandas
// DataFrames) display formats.
//
// # Robustness
//
// One execution runs in a context at a time; others wait. An execution
// whose client leaves (the SDK's timeoutMs) is interrupted, and the context
// stays usable. A kernel that dies fails the running execution with a
// KernelDied error, and so does every execution until the context is
// restarted. One execution's output is bounded (Config.OutputLimit): what
// comes past it is dropped with a note on stderr.
package interp
