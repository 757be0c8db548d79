package sandbox

import "context"

// EnsureRunning returns sandbox id, running, for the data-plane proxy, which
// calls it before it forwards traffic to a sandbox it holds no connections
// to. A sandbox that is not running is an error wrapping
// errdefs.ErrFailedPrecondition (unknown or killed: errdefs.ErrNotFound),
// which the proxy answers as a gone sandbox.
//
// This is the hook for resuming a paused sandbox when traffic arrives for
// it: a resume belongs here, and whatever pauses a sandbox must make the
// proxy drop its connections (through the OnKill hooks, or a hook of its
// own) so the next request comes back through this method.
//
// A paused sandbox whose lifecycle allows it (autoResume, idlePause) is
// resumed here; see Wake.
func (m *Manager) EnsureRunning(ctx context.Context, id string) (*Sandbox, error) {
	return m.Wake(ctx, id)
}

// trafficToken returns a new traffic access token for a sandbox with private
// ports, and "" (public ports) otherwise.
func trafficToken(private bool) string {
	if !private {
		return ""
	}
	return newToken()
}
