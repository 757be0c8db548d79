// Package agentapi is the contract between sbx serve and sbx-agent, the
// agent that runs as PID 1 in every sandbox: what one side writes and the
// other reads, apart from the envd protocol itself (package gen). Both
// sides import it; it imports nothing of sbx but leaf packages, so the
// server never depends on the agent's implementation (internal/agent) and
// the agent never on the server's.
//
// It holds:
//
//   - the agent's configuration, [Config], passed in the [ConfigEnv]
//     variable at start and later through [ConfigurePath] or [ReconfigName];
//   - the sbx-private routes and headers the server uses on the agent's
//     socket ([HealthPath], [ConfigurePath], [TunnelPath],
//     [AccessTokenHeader]) and the envd version the agent implements
//     ([EnvdVersion]);
//   - the paths both sides agree on ([BinaryPath], [RunDir], [SocketName],
//     [HostSocketDir]);
//   - the quiesce protocol around gVisor checkpoints: its signals
//     ([QuiesceSignal], [WakeSignal]) and its marker ([WriteQuiesced],
//     [ReadQuiesced]).
//
// Everything here is also a promise to sandboxes already running and to
// checkpoint images already taken, whose agent is an older build: names,
// paths, signals and the wire format only ever grow.
//
// # Quiesce protocol
//
// Under runsc the agent binds its own socket, at [SocketPath] in
// [RunDir], a directory the host bind-mounts into the box (its host side is
// [HostSocketDir] in the sandbox's directory), and gVisor cannot checkpoint a
// box holding such a socket. So, for every checkpoint:
//
//  1. The runtime (internal/runtime/runsc) removes any marker left in the
//     socket directory and sends [QuiesceSignal] (SIGUSR1) to the agent.
//  2. The agent closes its listener and every connection (the processes in
//     the box keep running). Under gVisor it then opens
//     /proc/gvisor/checkpoint, whose read returns once the next checkpoint
//     is over, in the box it was taken of and in every box restored from
//     its image.
//  3. The agent writes the marker [QuiescedName] with [WriteQuiesced],
//     whole at once: with the wakes mark when step 2 armed that wait (it
//     will listen again by itself), empty otherwise.
//  4. The runtime sees the marker, reads it with [ReadQuiesced] and takes
//     the checkpoint; it records in the image whether the agent wakes by
//     itself. A marker it cannot read as either form counts as "does not
//     wake by itself": [WakeSignal] then wakes the agent anyway.
//  5. Before a restore, the runtime writes the restored sandbox's
//     configuration (a new sandbox: its own token and id) to [ReconfigName]
//     in the socket directory. After the restore, or after a checkpoint
//     that leaves the box running (or failed), it removes the marker and,
//     unless the agent wakes by itself, sends [WakeSignal] (SIGUSR2); it
//     also sends it to an agent that wakes by itself but has not listened
//     after a grace period. An image without the wakes mark (an older
//     sbx's) is always signalled.
//  6. Woken, the agent applies and removes [ReconfigName] if it exists,
//     removes the marker, binds [SocketPath] again and serves. A
//     [WakeSignal] while serving only applies a [ReconfigName] left there.
//  7. The runtime waits until the socket accepts, and the server until
//     [HealthPath] answers through it.
//
// A marker found on a running box when the server starts is left over from
// a checkpoint interrupted between steps 3 and 5: the runtime removes it and
// sends [WakeSignal].
package agentapi
