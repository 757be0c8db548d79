// Package agent is sbx's in-sandbox agent: the data plane that runs as PID 1
// inside every sandbox and speaks E2B's envd protocol, so that the e2b SDKs
// work unchanged through the sbx server.
//
// # Overview
//
// An [Agent] serves one [http.Handler] (HTTP/1.1 and h2c) on a listener the
// runtime hands it. It holds:
//
//   - the process.Process Connect service: start, connect to, feed, signal and
//     resize processes (optionally on a PTY), each in its own process group;
//   - the filesystem.Filesystem Connect service (stat, make directories,
//     move, list to a depth, remove, watch directories as a stream or
//     through buffered watchers) and envd's HTTP /files (download with
//     Range, multipart and octet-stream upload), each call made with the
//     calling user's filesystem identity;
//   - a reaper that, as PID 1 (or as a child subreaper outside a sandbox),
//     collects the exit status of every child, orphans included;
//   - a port tunnel (GET /sbx/tunnel?port=N, Upgrade: sbx-tunnel) through
//     which the server reaches any TCP port inside the sandbox's network
//     namespace; package tunnel holds its client side;
//   - GET /health, the only route served without the access token.
//
// # Usage
//
//	a, err := agent.New(cfg, logger)
//	...
//	a.Handle("/extra", handler) // more services, behind the same auth
//	err = a.Serve(ctx, ln)           // until ctx is done, then stops processes
//
// Only one Agent per OS process should run processes: the reaper waits for
// every child of the process, not only the ones the Agent started.
package agent
