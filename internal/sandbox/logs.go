package sandbox

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

const (
	// agentLogFile is the log the runtime drivers keep in a box's bundle
	// directory: the agent's stdout and stderr, and the runtime's own
	// lines about starting the box.
	agentLogFile = "agent.log"
	// maxAgentLog is how much of the end of a sandbox's log AgentLog
	// reads: older lines are left out.
	maxAgentLog = 16 << 20
)

// AgentLog returns sandbox id's log, as E2B's sandbox logs are its envd's:
// what the agent logged (processes started and ended, failed requests)
// and the runtime's lines about starting the box, one line each, kept with
// the sandbox across pauses until it is killed; at most its last 16 MiB,
// beginning at a line. The host's path of the sandbox's directory, which
// the agent and the runtime may name, is shown as "<sandbox>". A sandbox
// whose box has not written a log yet has an empty one; an unknown or
// killed sandbox is not found.
func (d DataPlane) AgentLog(ctx context.Context, id string) ([]byte, error) {
	m := d.m
	if _, err := m.Get(ctx, id); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(m.dir(id), "bundle", agentLogFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cut := false
	if fi, err := f.Stat(); err == nil && fi.Size() > maxAgentLog {
		if _, err := f.Seek(fi.Size()-maxAgentLog, io.SeekStart); err != nil {
			return nil, err
		}
		cut = true
	}
	b, err := io.ReadAll(io.LimitReader(f, maxAgentLog))
	if err != nil {
		return nil, err
	}
	if cut {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return bytes.ReplaceAll(b, []byte(m.dir(id)), []byte("<sandbox>")), nil
}
