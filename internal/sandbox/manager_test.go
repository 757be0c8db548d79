package sandbox

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
)

func TestNewID(t *testing.T) {
	seen := make(map[string]bool, 10000)
	for range 10000 {
		id := newID()
		if len(id) != 20 {
			t.Fatalf("newID() = %q: %d characters, want 20", id, len(id))
		}
		if id[0] < 'a' || id[0] > 'z' {
			t.Fatalf("newID() = %q does not start with a letter", id)
		}
		for _, c := range id {
			if !strings.ContainsRune(idAlphabet, c) {
				t.Fatalf("newID() = %q has %q, outside [a-z0-9]", id, c)
			}
		}
		if seen[id] {
			t.Fatalf("newID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestValidateMap(t *testing.T) {
	big := func(n int) map[string]string {
		m := make(map[string]string, n)
		for i := range n {
			m["k"+strconv.Itoa(i)] = "v"
		}
		return m
	}
	for _, tc := range []struct {
		name string
		what string
		m    map[string]string
		msg  string // "" when valid
	}{
		{"nil", "metadata", nil, ""},
		{"empty", "envVars", map[string]string{}, ""},
		{"plain", "envVars", map[string]string{"PATH": "/bin", "X": ""}, ""},
		{"value with =", "envVars", map[string]string{"X": "a=b"}, ""},
		{"key with = in metadata", "metadata", map[string]string{"a=b": "c"}, ""},
		{"256 entries", "metadata", big(256), ""},
		{"257 entries", "metadata", big(257), "at most 256 entries"},
		{"key 256 bytes", "metadata", map[string]string{strings.Repeat("k", 256): "v"}, ""},
		{"key 257 bytes", "metadata", map[string]string{strings.Repeat("k", 257): "v"}, "keys must be 1-256 bytes"},
		{"empty key", "envVars", map[string]string{"": "v"}, "keys must be 1-256 bytes"},
		{"value 64 KiB", "envVars", map[string]string{"K": strings.Repeat("v", 64<<10)}, ""},
		{"value over 64 KiB", "envVars", map[string]string{"K": strings.Repeat("v", 64<<10+1)}, "values at most 64 KiB"},
		{"NUL in key", "metadata", map[string]string{"a\x00b": "v"}, "NUL bytes"},
		{"NUL in value", "envVars", map[string]string{"A": "v\x00"}, "NUL bytes"},
		{"= in env key", "envVars", map[string]string{"A=B": "v"}, `key "A=B" contains '='`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validateMap(tc.what, tc.m)
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("validateMap: %v", err)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("validateMap = %v, want invalid argument", err)
			}
			msg := errdefs.Message(err)
			if !strings.HasPrefix(msg, tc.what+":") || !strings.Contains(msg, tc.msg) {
				t.Errorf("message = %q, want %q naming %s", msg, tc.msg, tc.what)
			}
		})
	}
}

func TestResolveTimeout(t *testing.T) {
	d := func(v time.Duration) *time.Duration { return &v }
	for _, tc := range []struct {
		name        string
		def, max    time.Duration
		in          *time.Duration
		want        time.Duration
		errContains string
	}{
		{"nil is the default", 5 * time.Minute, 0, nil, 5 * time.Minute, ""},
		{"explicit", 5 * time.Minute, 0, d(time.Hour), time.Hour, ""},
		{"zero is no limit", 5 * time.Minute, 0, d(0), 0, ""},
		{"zero default is no limit", 0, 0, nil, 0, ""},
		{"negative", 5 * time.Minute, 0, d(-time.Second), 0, "must not be negative"},
		{"negative with max", 5 * time.Minute, time.Hour, d(-time.Second), 0, "must not be negative"},
		{"at max", 5 * time.Minute, time.Hour, d(time.Hour), time.Hour, ""},
		{"over max", 5 * time.Minute, time.Hour, d(time.Hour + time.Second), 0, "server maximum of 1h0m0s"},
		{"zero with max", 5 * time.Minute, time.Hour, d(0), 0, "server maximum"},
		{"default over max", 2 * time.Hour, time.Hour, nil, 0, "server maximum"},
		{"zero default with max", 0, time.Hour, nil, 0, "server maximum"},
		{"default under max", 5 * time.Minute, time.Hour, nil, 5 * time.Minute, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Manager{cfg: Config{DefaultTimeout: tc.def, MaxTimeout: tc.max}}
			got, err := m.resolveTimeout(tc.in)
			if tc.errContains != "" {
				if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(errdefs.Message(err), tc.errContains) {
					t.Fatalf("resolveTimeout = %v, %v; want invalid argument %q", got, err, tc.errContains)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("resolveTimeout = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// noRuntime fails the test on any call: the tests below exercise the
// Manager's bookkeeping, which must not touch a runtime.
type noRuntime struct{ t *testing.T }

func (r noRuntime) fail(method string) error {
	r.t.Errorf("runtime.%s called", method)
	return errors.New("no runtime in tests")
}
func (r noRuntime) Start(context.Context, BoxSpec) error { return r.fail("Start") }
func (r noRuntime) State(context.Context, string) (BoxState, error) {
	return BoxState{}, r.fail("State")
}
func (r noRuntime) Pause(context.Context, string) error   { return r.fail("Pause") }
func (r noRuntime) Resume(context.Context, string) error  { return r.fail("Resume") }
func (r noRuntime) Destroy(context.Context, string) error { return r.fail("Destroy") }

type noTemplates struct{}

func (noTemplates) Get(_ context.Context, name string) (Template, error) {
	return Template{}, errdefs.New(errdefs.ErrNotFound, "template %q not found", name)
}

// newTestManager returns a Manager over a temporary store, with records put
// straight into it.
func newTestManager(t *testing.T, cfg Config, records ...*store.Sandbox) *Manager {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(dir, "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg.DataDir = dir
	if cfg.Runtimes == nil {
		cfg.Runtimes = map[string]Runtime{"runc": noRuntime{t}}
	}
	m, err := New(cfg, noTemplates{}, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	for _, sb := range records {
		if err := db.PutSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func TestCreateRefusesBeforeRuntime(t *testing.T) {
	m := newTestManager(t, Config{DefaultTimeout: time.Minute, MaxTimeout: time.Hour})
	ctx := context.Background()
	neg := -time.Second
	for _, tc := range []struct {
		name  string
		p     CreateParams
		class error
	}{
		{"negative timeout", CreateParams{Template: "base", Timeout: &neg}, errdefs.ErrInvalidArgument},
		{"bad metadata", CreateParams{Template: "base", Metadata: map[string]string{"": "x"}}, errdefs.ErrInvalidArgument},
		{"bad env", CreateParams{Template: "base", EnvVars: map[string]string{"A=B": "x"}}, errdefs.ErrInvalidArgument},
		{"unknown template", CreateParams{Template: "nope"}, errdefs.ErrNotFound},
	} {
		if _, err := m.Create(ctx, tc.p); !errors.Is(err, tc.class) {
			t.Errorf("%s: Create = %v, want %v", tc.name, err, tc.class)
		}
	}
	if all, err := m.db.ListSandboxes(ctx); err != nil || len(all) != 0 {
		t.Errorf("refused creates left records: %v, %v", all, err)
	}
}

func TestLookupsAndTimeouts(t *testing.T) {
	now := time.Now().UTC()
	rec := func(id string, state State, tpl string, started time.Time, end time.Time, md map[string]string) *store.Sandbox {
		return &store.Sandbox{ID: id, Template: tpl, State: state, Runtime: "runc", CreatedAt: started, StartedAt: started, EndAt: end, Metadata: md}
	}
	running := rec("running", StateRunning, "base", now, now.Add(time.Hour), map[string]string{"team": "a"})
	older := rec("older", StateRunning, "py", now.Add(-time.Hour), time.Time{}, map[string]string{"team": "b"})
	failed := rec("failed", StateFailed, "base", now.Add(-2*time.Hour), time.Time{}, nil)
	killed := rec("killed", StateKilled, "base", now, time.Time{}, nil)
	m := newTestManager(t, Config{DefaultTimeout: 10 * time.Minute}, running, older, failed, killed)
	ctx := context.Background()

	if _, err := m.Get(ctx, "killed"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get(killed) = %v, want not found", err)
	}
	if _, err := m.Get(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want not found", err)
	}
	if sb, err := m.Get(ctx, "failed"); err != nil || sb.State != StateFailed {
		t.Errorf("Get(failed) = %v, %v", sb, err)
	}
	if _, err := m.getRunning(ctx, "failed"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("GetRunning(failed) = %v, want failed precondition", err)
	}
	if sb, err := m.getRunning(ctx, "running"); err != nil || sb.ID != "running" {
		t.Errorf("GetRunning(running) = %v, %v", sb, err)
	}

	for _, tc := range []struct {
		f    ListFilter
		want string
	}{
		{ListFilter{}, "running older"}, // newest first; running and paused by default
		{ListFilter{States: []State{StateFailed, StateRunning}}, "running older failed"},
		{ListFilter{Template: "py"}, "older"},
		{ListFilter{Metadata: map[string]string{"team": "a"}}, "running"},
		{ListFilter{Metadata: map[string]string{"team": "c"}}, ""},
	} {
		got, err := m.List(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, sb := range got {
			ids = append(ids, sb.ID)
		}
		if s := strings.Join(ids, " "); s != tc.want {
			t.Errorf("List(%+v) = %q, want %q", tc.f, s, tc.want)
		}
	}
	removed := ""
	remove := func(_ context.Context, name string) error { removed = name; return nil }
	// Killed and failed sandboxes do not count as users of a template.
	if err := m.Templates().Remove(ctx, "base", remove); !errors.Is(err, errdefs.ErrConflict) || removed != "" || errdefs.Message(err) != `template "base" is used by 1 sandbox(es)` {
		t.Errorf("RemoveTemplate(base) with a live sandbox = %v (removed %q); want a conflict naming 1 sandbox", err, removed)
	}
	if err := m.Templates().Remove(ctx, "unused", remove); err != nil || removed != "unused" {
		t.Errorf("RemoveTemplate(unused) = %v (removed %q)", err, removed)
	}

	end := func(id string) time.Time {
		t.Helper()
		sb, err := m.db.GetSandbox(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return sb.EndAt
	}
	// SetTimeout sets, and may shorten.
	if err := m.SetTimeout(ctx, "running", time.Minute); err != nil {
		t.Fatal(err)
	}
	if d := time.Until(end("running")); d <= 50*time.Second || d > time.Minute {
		t.Errorf("after SetTimeout(1m): ends in %s", d)
	}
	// Extend never shortens.
	before := end("running")
	if _, err := m.Extend(ctx, "running", ptr(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := end("running"); !got.Equal(before) {
		t.Errorf("Extend(1s) moved the end from %s to %s", before, got)
	}
	// nil: the server default.
	sb, err := m.Extend(ctx, "running", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(sb.EndAt); d < 9*time.Minute {
		t.Errorf("after Extend(nil): ends in %s, want about the 10m default", d)
	}
	// A sandbox without a limit keeps none.
	if sb, err := m.Extend(ctx, "older", ptr(time.Minute)); err != nil || !sb.EndAt.IsZero() {
		t.Errorf("Extend on a sandbox without a limit: %v, %v", sb, err)
	}
	// 0 removes the limit.
	if err := m.SetTimeout(ctx, "running", 0); err != nil || !end("running").IsZero() {
		t.Errorf("SetTimeout(0): %v, end %v", err, end("running"))
	}

	if err := m.SetTimeout(ctx, "failed", time.Minute); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("SetTimeout(failed) = %v, want failed precondition", err)
	}
	if err := m.SetTimeout(ctx, "killed", time.Minute); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("SetTimeout(killed) = %v, want not found", err)
	}
	if _, err := m.Extend(ctx, "nope", nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Extend(unknown) = %v, want not found", err)
	}
	if err := m.SetTimeout(ctx, "running", -time.Second); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("SetTimeout(-1s) = %v, want invalid argument", err)
	}
	if err := m.Kill(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Kill(unknown) = %v, want not found", err)
	}
}

func ptr[T any](v T) *T { return &v }
