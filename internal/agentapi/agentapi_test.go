package agentapi

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// TestConfigRoundTrip encodes configurations as the server does and parses
// them as the agent does.
func TestConfigRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Config
		want Config // after ParseConfig
	}{
		{
			name: "full",
			in:   Config{AccessToken: "t", EnvVars: map[string]string{"A": "1"}, DefaultUser: "root", DefaultWorkdir: "/w", SandboxID: "s", TemplateID: "p"},
			want: Config{AccessToken: "t", EnvVars: map[string]string{"A": "1"}, DefaultUser: "root", DefaultWorkdir: "/w", SandboxID: "s", TemplateID: "p"},
		},
		{
			name: "defaults",
			in:   Config{AccessToken: "t"},
			want: Config{AccessToken: "t", DefaultUser: DefaultUser},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConfig(tc.in.Encode())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("round trip: got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestConfigWire pins the JSON the server sends: agents already running in
// sandboxes read it.
func TestConfigWire(t *testing.T) {
	cfg := Config{AccessToken: "t", EnvVars: map[string]string{"A": "1"}, DefaultUser: "user", DefaultWorkdir: "/w", SandboxID: "s", TemplateID: "p"}
	const want = `{"accessToken":"t","envVars":{"A":"1"},"defaultUser":"user","defaultWorkdir":"/w","sandboxID":"s","templateID":"p"}`
	if got := string(cfg.Encode()); got != want {
		t.Fatalf("encoded\n%s\nwant\n%s", got, want)
	}
	const empty = `{"accessToken":"","envVars":null,"defaultUser":"","sandboxID":"","templateID":""}`
	if got := string((Config{}).Encode()); got != empty {
		t.Fatalf("encoded\n%s\nwant\n%s", got, empty)
	}
	// The agent also reads the shorter form older servers' tests and
	// tools write.
	got, err := ParseConfig([]byte(`{"accessToken":"t"}`))
	if err != nil || got.AccessToken != "t" || got.DefaultUser != DefaultUser {
		t.Fatalf("parse: %+v, %v", got, err)
	}
	if _, err := ParseConfig([]byte(`{"accessToken":`)); err == nil {
		t.Fatal("parse of truncated JSON succeeded")
	}
}

func TestQuiescedRoundTrip(t *testing.T) {
	for _, wakes := range []bool{false, true} {
		dir := t.TempDir()
		if err := WriteQuiesced(dir, wakes); err != nil {
			t.Fatal(err)
		}
		got, err := ReadQuiesced(dir)
		if err != nil || got != wakes {
			t.Fatalf("wrote wakes=%v, read %v, %v", wakes, got, err)
		}
		if _, err := os.Stat(filepath.Join(dir, QuiescedName+".tmp")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("temporary file left behind: %v", err)
		}
	}
}

// TestQuiescedOldAgent reads the marker of an agent that predates the wakes
// mark (an image of an older sbx): an empty file, which waits for
// WakeSignal.
func TestQuiescedOldAgent(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "quiesced"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if wakes, err := ReadQuiesced(dir); err != nil || wakes {
		t.Fatalf("read %v, %v; want false, nil", wakes, err)
	}
}

func TestQuiescedRejected(t *testing.T) {
	t.Run("missing", func(t *testing.T) {
		if _, err := ReadQuiesced(t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err %v; want fs.ErrNotExist", err)
		}
	})
	for name, content := range map[string]string{
		"half written": wakesMark[:10],
		"no newline":   wakesMark[:len(wakesMark)-1],
		"other":        "resume\n",
		"longer":       wakesMark + "x",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, QuiescedName), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if wakes, err := ReadQuiesced(dir); !errors.Is(err, errdefs.ErrInvalidArgument) || wakes {
				t.Fatalf("read %v, %v; want an invalid-argument error", wakes, err)
			}
		})
	}
	t.Run("symlink", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "target")
		if err := os.WriteFile(target, []byte(wakesMark), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(dir, QuiescedName)); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadQuiesced(dir); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("err %v; want invalid argument", err)
		}
	})
	t.Run("fifo", func(t *testing.T) {
		dir := t.TempDir()
		if err := syscall.Mkfifo(filepath.Join(dir, QuiescedName), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadQuiesced(dir); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("err %v; want invalid argument", err)
		}
	})
}

func TestSignalsAndPaths(t *testing.T) {
	// Running agents and images already taken depend on these values.
	if QuiesceSignal != syscall.SIGUSR1 || WakeSignal != syscall.SIGUSR2 {
		t.Fatalf("signals %v, %v", QuiesceSignal, WakeSignal)
	}
	for got, want := range map[string]string{
		ConfigEnv: "SBX_AGENT_CONFIG", SocketPath: "/.sbx/run/agent.sock", BinaryPath: "/.sbx/sbx-agent",
		ConfigurePath: "/.sbx/configure", HealthPath: "/health", ReconfigName: "agent.json", QuiescedName: "quiesced",
		HostSocketDir: "agent", AccessTokenHeader: "X-Access-Token", TunnelPath: "/sbx/tunnel", TunnelProtocol: "sbx-tunnel",
		wakesMark: "wakes-after-checkpoint\n",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}
