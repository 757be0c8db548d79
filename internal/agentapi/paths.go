package agentapi

// BinaryPath is where the server's runtimes bind-mount the agent binary
// (read-only) in every box and run it from, as the box's init.
const BinaryPath = "/.sbx/sbx-agent"

// HostSocketDir is the directory, inside a sandbox's directory on the host,
// that holds the agent's socket ([SocketName]) and nothing else. The server
// binds the socket there, or, under a runtime that cannot hand the box a
// listening socket (runsc), bind-mounts the directory at [RunDir] and lets
// the agent bind it; the box can write to it, so nothing else of the
// sandbox's directory is exposed that way.
const HostSocketDir = "agent"

// SocketName is the file name of the agent's socket, in [HostSocketDir] on
// the host and in [RunDir] in the box.
const SocketName = "agent.sock"

// RunDir is where the runsc runtime mounts [HostSocketDir] in the box: the
// directory of the agent's socket, of the quiesce marker ([QuiescedName])
// and of a restored agent's configuration ([ReconfigName]).
const RunDir = "/.sbx/run"

// SocketPath is the agent's socket inside the box under runsc: the server
// starts the agent with -listen unix:SocketPath.
const SocketPath = RunDir + "/" + SocketName

// ReconfigName is the file, in the socket directory, that holds the
// configuration of a restored box's agent (an encoded [Config]: the restored
// sandbox's own token and id). The runsc runtime creates it before a
// restore, readable by the box's root only; the agent applies and removes
// it when it listens again (step 6 of the quiesce protocol in the package
// doc).
const ReconfigName = "agent.json"
