package sandbox

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
)

func TestAgentLog(t *testing.T) {
	m := newTestManager(t, Config{}, &store.Sandbox{ID: "withlog", Template: "base", State: StateRunning, Runtime: "runc"},
		&store.Sandbox{ID: "nolog", Template: "base", State: StateRunning, Runtime: "runc"})
	ctx := context.Background()
	bundle := filepath.Join(m.dir("withlog"), "bundle")
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	line := `level=INFO msg="agent serving" addr=` + m.dir("withlog") + "/agent/agent.sock\n"
	if err := os.WriteFile(filepath.Join(bundle, agentLogFile), []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := m.DataPlane().AgentLog(ctx, "withlog")
	if err != nil || string(b) != `level=INFO msg="agent serving" addr=<sandbox>/agent/agent.sock`+"\n" {
		t.Fatalf("AgentLog = %q, %v; want the host path hidden", b, err)
	}
	if b, err := m.DataPlane().AgentLog(ctx, "nolog"); err != nil || len(b) != 0 {
		t.Fatalf("no log yet: %q, %v; want an empty one", b, err)
	}
	if _, err := m.DataPlane().AgentLog(ctx, "unknown"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown sandbox: %v, want not found", err)
	}

	// A log past the bound: its end, from a line's start.
	big := strings.Repeat("x", 100) + "\n"
	var buf bytes.Buffer
	for buf.Len() <= maxAgentLog {
		buf.WriteString(big)
	}
	buf.WriteString("last\n")
	if err := os.WriteFile(filepath.Join(bundle, agentLogFile), buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err = m.DataPlane().AgentLog(ctx, "withlog")
	if err != nil || len(b) > maxAgentLog || !bytes.HasSuffix(b, []byte("x\nlast\n")) || !bytes.HasPrefix(b, []byte(big)) {
		t.Fatalf("a large log: %d bytes, %v; want its end from a line's start", len(b), err)
	}
}
