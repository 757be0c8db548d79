// Package dashboard serves sbx's web dashboard on the API port: the
// embedded front end (web/dashboard/, built into dist/) and the routes
// only the dashboard uses. Package api routes, authenticates and
// team-checks every request before it gets here (see [api.Dashboard]);
// this package talks to the sandboxes' agents for what the E2B API has no
// route for.
//
// # Overview
//
//   - assets.go: the pages, from the embedded build, with a fresh CSP
//     nonce in index.html; 503 when the build is missing.
//   - headers.go: the Content-Security-Policy and the other security
//     headers of every dashboard response.
//   - hub.go, stream.go: the live sandbox list, server-sent events fed by
//     the Manager's lifecycle events (no polling).
//   - agent.go: Connect and /files clients of a sandbox's agent, reached
//     over its socket as the data plane reaches it.
//   - processes.go, files.go: the agent's process list and file routes.
//   - terminal.go: a shell on a PTY over a WebSocket, kept for a while
//     after a drop so that a reconnect finds it.
//
// # Usage
//
// internal/server makes a [Hub] before the Manager (it is one of the
// Manager's event sinks), then [New] with the Manager, and passes the
// [Server] to api.Config.Dashboard.
package dashboard
