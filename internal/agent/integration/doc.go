// Package integration tests the real sbx-agent binary: built static as it
// ships, started as PID 1 of a new PID namespace with its listener on file
// descriptor 3, as the runtime starts it. It lives apart from package agent
// because the agent's reaper there would collect this test's children.
package integration
