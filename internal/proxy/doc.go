// Package proxy is sbx's data plane: it forwards requests addressed to a
// sandbox to that sandbox, streaming both ways without buffering whole
// bodies.
//
// # Overview
//
// What it forwards: requests for the agent's port, EnvdPort (envd's
// Connect-RPC process and filesystem services, /files uploads and
// downloads, PTY and watch streams), go to the sandbox's agent over its unix
// socket; requests for any other port (an app's HTTP, WebSocket, gRPC, a
// preview URL) go to that port on the sandbox's loopback: straight from the
// host into the sandbox's network namespace where its runtime allows it
// (runc), else through the agent's tunnel (gVisor). See ports.go for the
// protocols (HTTP/1.1, h2c when the port speaks it), connect.go for Connect
// streams the proxy ends when the agent goes away mid-stream, and direct.go
// for plain GETs of large bodies.
//
// How it routes: [Proxy.Route] reads the sandbox and port from the
// E2b-Sandbox-Id and E2b-Sandbox-Port headers (what the e2b SDKs send when
// E2B_SANDBOX_URL is set) or from a Host of {port}-{sandboxID}.{domain}
// (preview URLs); a request that has neither is not for the data plane.
// The server's top-level handler (internal/server) asks Route first and
// hands everything else to the control plane (package api). A request for
// EnvdPort under /.sbx/ (the agent's own routes for the server) is refused.
//
// How it authenticates: the proxy never takes an API key and never passes
// one on (X-API-Key and bearer Authorization headers are removed before a
// request enters a sandbox). Requests for EnvdPort carry the envd access
// token, which the agent checks; the proxy presents the same token to open
// a tunnel. Requests for other ports of a sandbox created with private
// ports must carry its traffic access token in [TrafficTokenHeader],
// checked here in constant time before anything is forwarded.
//
// Errors are answered in E2B's shape through package errhttp. A sandbox
// that is gone (unknown, killed, failed, or paused without auto-resume) or
// cannot be reached is a 502, as E2B's own proxy answers and as the e2b SDKs
// read it.
//
// # Buffers and memory
//
// Response bodies are copied through pooled 256 KiB buffers, request bodies
// to the agent through pooled 1 MiB buffers: one per copy in flight,
// returned to the pool when it ends and released by the garbage collector
// when idle. On the direct path, a body of 1 MiB or more goes through one of
// at most 16 buffers of 4 MiB (64 MiB in all); past that, bodies are spliced
// from socket to socket, which takes no memory of the server's. Each
// connection of a port's HTTP/2 transport may hold up to 16 MiB of received
// data (4 MiB per stream) that the client has not read yet. Idle upstream
// connections are pooled per sandbox and port (16 per port on the direct
// path, 64 on the transports, which close theirs after 90 seconds idle).
//
// # Usage
//
// [New] takes the [Sandboxes] the proxy reaches (internal/server adapts the
// sandbox Manager). Whoever kills or pauses a sandbox must call
// [Proxy.Forget] so its connections are dropped and the next request
// resolves it again (which wakes a paused sandbox that allows it), and the
// Manager's idle pauses read [Proxy.Activity]. [Proxy.Close] drops every
// connection when the server stops.
package proxy
