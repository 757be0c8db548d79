package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestBaseRetired: a base an older sbx built from another definition is
// retired when sbx serve starts (renamed base.<hash>) and built again. What
// was made from the old one keeps it: a paused sandbox resumes over its
// files, a snapshot and a template built from it start from them, a tag of
// it still points there. New sandboxes get the new base (with sudo).
//
// The server runs on a private copy of the template cache, whose base is
// made to look old (its source, a marker file): only the new base is
// built, once.
func TestBaseRetired(t *testing.T) {
	harness.Require(t)
	ctx := ctxFor(t, 25*time.Minute)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	shared := harness.TemplatesDir()
	if _, err := os.Stat(filepath.Join(shared, "base", "meta.json")); err != nil {
		t.Fatalf("no base template in %s (any e2e test builds it first: run go test -run TestHealth ./tests/e2e): %v", shared, err)
	}
	// The package cache too, so that the rebuild downloads nothing.
	for _, d := range []string{"base", ".cache"} {
		if b, err := exec.Command("cp", "-a", filepath.Join(shared, d), dir).CombinedOutput(); err != nil {
			t.Fatalf("copy %s: %v: %s", d, err, b)
		}
	}
	// The old base's files carry a marker the new one lacks.
	if err := os.WriteFile(filepath.Join(dir, "base", "rootfs", "etc", "sbx-old-base"), []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SBX_TEST_TEMPLATES", dir)

	srv := harness.Start(t, "--internet=false")
	c := srv.Client
	const marker = `cat /etc/sbx-old-base 2>/dev/null || echo new`
	paused, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, ctx, paused, `echo mine > /home/user/mine`, nil)
	snap, err := paused.CreateSnapshot(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	// Files only: the resume mounts its root filesystem again, over
	// whatever its record names.
	if err := paused.Pause(ctx, &client.PauseOptions{FilesOnly: true}); err != nil {
		t.Fatal(err)
	}
	ctxDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM base\nRUN echo built > /etc/built\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := c.BuildTemplate(ctx, client.BuildOptions{Name: "on-old-base", ContextDir: ctxDir}, nil); err != nil || b.Status != client.BuildReady {
		t.Fatalf("build on the old base: %+v, %v", b, err)
	}
	if _, err := c.AssignTemplateTags(ctx, "base", "old"); err != nil {
		t.Fatal(err)
	}
	srv.Stop()

	// What an sbx without sudo in its base recorded.
	metaPath := filepath.Join(dir, "base", "meta.json")
	var meta map[string]any
	b, err := os.ReadFile(metaPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	current := meta["source"].(string)
	meta["source"] = "debootstrap bookworm (python3,nodejs,git,curl,ca-certificates,procps,npm)"
	b, _ = json.Marshal(meta)
	if err := os.WriteFile(metaPath, b, 0o644); err != nil {
		t.Fatal(err)
	}

	srv.StartAgain() // retires the base and builds it again
	m := regexp.MustCompile(`retired out-of-date base template.* retired_as=(base\.[0-9a-f]{12})`).FindStringSubmatch(srv.Logs())
	if m == nil {
		t.Fatalf("no log line of the retirement:\n%s", srv.Logs())
	}
	retired := m[1]
	if _, err := os.Stat(filepath.Join(dir, retired, "rootfs", "etc", "sbx-old-base")); err != nil {
		t.Fatalf("the retired base's files: %v", err)
	}
	b, err = os.ReadFile(metaPath)
	if err != nil || !strings.Contains(string(b), current) {
		t.Fatalf("the new base's meta.json (%v) does not have this sbx's source %q:\n%s", err, current, b)
	}

	// New sandboxes: the new base.
	fresh, err := c.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, fresh, marker+`; sudo -n id -u`, nil); res.Stdout != "new\n0\n" {
		t.Errorf("a new sandbox of base: %q %q; want the new base, with sudo", res.Stdout, res.Stderr)
	}
	if fresh.TemplateID != "base" {
		t.Errorf("new sandbox's template %q", fresh.TemplateID)
	}
	// The paused sandbox resumes over the old base, with its own files.
	resumed, err := c.Resume(ctx, paused.ID, nil)
	if err != nil {
		t.Fatalf("resume a sandbox of the old base: %v\n%s", err, srv.Logs())
	}
	if res := mustRun(t, ctx, resumed, marker+`; cat /home/user/mine`, nil); res.Stdout != "old\nmine\n" {
		t.Errorf("the resumed sandbox: %q %q; want the old base and its own file", res.Stdout, res.Stderr)
	}
	if info, err := c.GetSandbox(ctx, paused.ID); err != nil || info.TemplateID != retired {
		t.Errorf("the resumed sandbox's template: %+v, %v; want %s", info, err, retired)
	}
	// A snapshot, a template built on the old base and a tag of it.
	for _, from := range []string{snap.SnapshotID, "on-old-base", "base:old"} {
		sb, err := c.CreateSandbox(ctx, client.CreateOptions{Template: from})
		if err != nil {
			t.Errorf("create from %s: %v", from, err)
			continue
		}
		want := "old\n"
		if from == "on-old-base" {
			want = "old\nbuilt\n"
		}
		cmd := marker
		if from == "on-old-base" {
			cmd += "; cat /etc/built"
		}
		if res := mustRun(t, ctx, sb, cmd, nil); res.Stdout != want {
			t.Errorf("a sandbox of %s: %q %q; want %q", from, res.Stdout, res.Stderr, want)
		}
		sb.Kill(ctx)
	}
	// In use, the retired base stays; once its users are gone it can be
	// removed by hand.
	if err := c.DeleteTemplate(ctx, retired); !errors.Is(err, client.ErrConflict) {
		t.Errorf("remove the retired base %s while sandboxes use it: %v, want a conflict", retired, err)
	}
	if err := resumed.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSnapshot(ctx, snap.SnapshotID); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTemplate(ctx, "on-old-base"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveTemplateTags(ctx, "base", "old"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTemplate(ctx, retired); err != nil {
		t.Errorf("remove the unused retired base %s: %v", retired, err)
	}
	if _, err := os.Stat(filepath.Join(dir, retired)); !os.IsNotExist(err) {
		t.Errorf("the retired base's directory after its removal: %v", err)
	}
}
