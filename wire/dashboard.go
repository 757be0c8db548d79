package wire

import "time"

// DashboardSession is a signed-in dashboard session: POST, GET
// /dashboard/api/session. The browser sends CSRFToken back in the
// X-CSRF-Token header of every call that changes state.
type DashboardSession struct {
	KeyID       string    `json:"keyId"`
	KeyName     string    `json:"keyName"`
	Team        string    `json:"team"`
	Role        string    `json:"role"` // "admin" or "member"
	ServerAdmin bool      `json:"serverAdmin"`
	CSRFToken   string    `json:"csrfToken"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

// DashboardSignIn is the body of POST /dashboard/api/session.
type DashboardSignIn struct {
	APIKey string `json:"apiKey"`
}

// DashboardRemoved is the data of the dashboard sandbox stream's remove
// event.
type DashboardRemoved struct {
	SandboxID string `json:"sandboxID"`
}

// DashboardProcess is one process of GET
// /dashboard/api/sandboxes/{id}/processes.
type DashboardProcess struct {
	PID  uint32   `json:"pid"`
	Cmd  string   `json:"cmd"`
	Args []string `json:"args"`
	Cwd  string   `json:"cwd"`
	Tag  string   `json:"tag"`
}

// DashboardFile is one entry of GET /dashboard/api/sandboxes/{id}/files.
type DashboardFile struct {
	Name         string    `json:"name"`
	Path         string    `json:"path"`
	Type         string    `json:"type"` // "file", "dir" or "symlink"
	Size         int64     `json:"size"`
	Mode         string    `json:"mode"` // octal permission bits, "0644"
	ModifiedTime time.Time `json:"modifiedTime"`
}
