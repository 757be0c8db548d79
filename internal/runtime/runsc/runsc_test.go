package runsc

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/agentapi"
	"github.com/sbxdev/sbx/internal/runtime/bundle"
	"github.com/sbxdev/sbx/internal/sandbox"
)

// The driver's boxes are exercised end to end by tests/e2e with
// SBX_TEST_RUNTIME=runsc (scripts/test.sh runs it): Start, State, Pause,
// Resume, Destroy, Checkpoint and Restore against real runsc, the real agent
// and the real Manager. These tests cover what gVisor changes in the spec
// and the host-side handling of the box's socket directory, which the box
// can write to.

func testSpec(t *testing.T) sandbox.BoxSpec {
	dir := t.TempDir()
	return sandbox.BoxSpec{
		ID: "abc123", Rootfs: filepath.Join(dir, "rootfs"), BundleDir: filepath.Join(dir, "bundle"),
		AgentPath: "/a", AgentListener: os.Stdin, AgentSocket: filepath.Join(dir, "agent", "agent.sock"),
		Env:    []string{"SBX_AGENT_CONFIG={\"accessToken\":\"t\"}"},
		Limits: sandbox.Limits{CPUs: 1, MemoryBytes: 1 << 30, Pids: 100},
		IDMap:  &sandbox.IDMap{HostID: 100000000, Size: 65536},
	}
}

func TestBoxSpec(t *testing.T) {
	s := testSpec(t)
	spec, err := boxSpec(s, bundle.Cgroups{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(spec.Process.Args, " "); got != agentapi.BinaryPath+" -listen unix:/.sbx/run/agent.sock" {
		t.Errorf("args %q", got)
	}
	if spec.Linux.Seccomp != nil {
		t.Error("the OCI seccomp profile is passed to runsc")
	}
	i := slices.IndexFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == agentapi.RunDir })
	if i < 0 {
		t.Fatalf("no %s mount: %+v", agentapi.RunDir, spec.Mounts)
	}
	if m := spec.Mounts[i]; m.Source != filepath.Dir(s.AgentSocket) || !slices.Contains(m.Options, "noexec") || !slices.Contains(m.Options, "nosuid") {
		t.Errorf("socket dir mount %+v", m)
	}
	if got := spec.Annotations[PidsAnnotation]; got != "100" {
		t.Errorf("annotation %s=%q, want the pids limit 100", PidsAnnotation, got)
	}
	for _, r := range spec.Process.Rlimits {
		if r.Type == "RLIMIT_NPROC" {
			t.Errorf("RLIMIT_NPROC %d set: the box's limit is the Sentry's task limit, as pids.max under runc", r.Hard)
		}
	}
	if p := spec.Linux.Resources.Pids; p == nil || *p.Limit != 4*100+512 {
		t.Errorf("host pids limit %+v", p)
	}
	// Everything else is package bundle's, as for runc.
	if spec.Linux.UIDMappings[0].HostID != 100000000 || spec.Process.NoNewPrivileges || *spec.Linux.Resources.Memory.Limit != 1<<30 {
		t.Errorf("shared spec not applied: %+v", spec.Linux)
	}
}

func TestCheckVersion(t *testing.T) {
	for out, ok := range map[string]bool{
		"runsc version v0.0.0-20260905035102-160fafc42237+sbx1\nspec: 1.2.1\n": true,
		"runsc version v0.0.0-20260905035102-160fafc42237+sbx2\n":              true,
		"runsc version v0.0.0-20260905035102-160fafc42237\nspec: 1.2.1\n":      false,
		"runsc version VERSION_MISSING\nspec: 1.2.1\n":                         false,
		"runsc version release-20260901.0\nspec: 1.2.1 +sbx\n":                 false, // the mark must be in the version
		"": false,
	} {
		err := checkVersion(out)
		if (err == nil) != ok {
			t.Errorf("checkVersion(%q) = %v, want ok %v", out, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "scripts/setup.sh") {
			t.Errorf("checkVersion(%q) = %v: the error must name scripts/setup.sh", out, err)
		}
	}
}

// TestNewRefusesUnpatched: New refuses a runsc whose version lacks sbx's
// patches, saying what to run. The binary is a script answering --version
// as an unpatched runsc does (scripts/setup.sh installs the patched one).
func TestNewRefusesUnpatched(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "runsc")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'runsc version v0.0.0-20260905035102-160fafc42237'\necho 'spec: 1.2.1'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := New(Options{Binary: bin, Root: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "lacks sbx's patches") || !strings.Contains(err.Error(), "scripts/setup.sh") {
		t.Fatalf("New with an unpatched runsc: %v; want refused, naming scripts/setup.sh", err)
	}
}

func TestSocketDir(t *testing.T) {
	s := testSpec(t)
	dir := filepath.Dir(s.AgentSocket)
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	// What a box may leave behind: its socket, a stale marker, symlinks
	// aimed at host files under the names the driver writes.
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	for name, target := range map[string]string{agentapi.ReconfigName: victim, agentapi.ReconfigName + ".tmp": victim, "sub/x": victim} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, agentapi.QuiescedName), nil, 0o600)
	if err := prepareSocketDir(dir, s); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("socket dir not emptied: %v", entries)
	}
	// Handed to the box's root (mapped to host 100000000), private.
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 100000000 || st.Gid != 100000000 || st.Mode&0o777 != 0o700 {
		t.Errorf("socket dir owned by %d:%d mode %#o", st.Uid, st.Gid, st.Mode&0o777)
	}
	if err := writeAgentConfig(dir, s); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, agentapi.ReconfigName))
	if err != nil || string(b) != `{"accessToken":"t"}` {
		t.Fatalf("agent config %q, %v", b, err)
	}
	// A symlink planted under the config's name is never written through.
	os.Remove(filepath.Join(dir, agentapi.ReconfigName))
	os.Symlink(victim, filepath.Join(dir, agentapi.ReconfigName))
	if err := writeAgentConfig(dir, s); err == nil {
		t.Error("wrote the agent config through a symlink")
	}
	if b, _ := os.ReadFile(victim); string(b) != "host" {
		t.Fatalf("host file changed to %q", b)
	}
}
