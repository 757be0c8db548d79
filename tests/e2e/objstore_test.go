package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestObjectStoreTemplates runs two servers that share one bucket (SeaweedFS
// on loopback) but not their template directories: server A builds a
// template, server B creates a sandbox from it by name without building
// it (nor the base template beneath it), fetching both from the bucket.
func TestObjectStoreTemplates(t *testing.T) {
	store := s3Store(t, "sbx")
	ctx := ctxFor(t, 20*time.Minute)

	a := harness.Start(t, "--object-store", store, "--internet=false")
	name := fmt.Sprintf("e2e-objstore-%d", os.Getpid())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := a.Client.DeleteTemplate(ctx, name); err != nil && !errors.Is(err, client.ErrNotFound) {
			t.Errorf("delete template %s: %v", name, err)
		}
	})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM base\nRUN echo made-on-a-$((6*7)) > /made\nENV MADE=a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := a.Client.BuildTemplate(ctx, client.BuildOptions{Name: name, ContextDir: dir, NoCache: true}, nil)
	if err != nil || b.Status != client.BuildReady {
		t.Fatalf("build on A: %+v, %v\n%s", b, err, a.Logs())
	}
	if !awaitLogged(a, "template published", name) {
		t.Fatalf("A did not publish %s:\n%s", name, a.Logs())
	}
	// A tag of the build, published too (B creates from it below).
	req, err := http.NewRequestWithContext(ctx, "POST", a.URL+"/templates/tags", strings.NewReader(`{"target":"`+name+`","tags":["v1"]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", a.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || !awaitLogged(a, "template published", name+":v1") {
		t.Fatalf("tag %s:v1 on A: %s, published %d times\n%s", name, resp.Status, logCount(a.Logs(), "template published", name+":v1"), a.Logs())
	}

	// B: its own data and template directories, the same bucket.
	tdir := filepath.Join(t.TempDir(), "templates")
	if err := os.Mkdir(tdir, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(tdir), 0o711); err != nil { // sandboxes reach their layers below it
		t.Fatal(err)
	}
	bsrv := harness.Start(t, "--object-store", store, "--templates-dir", tdir, "--internet=false")
	logs := bsrv.Logs()
	if strings.Contains(logs, "building template") || logCount(logs, "template fetched", "base") != 1 {
		t.Fatalf("B built the base template instead of fetching it:\n%s", logs)
	}
	for _, l := range strings.Split(a.Logs()+"\n"+logs, "\n") {
		if strings.Contains(l, " template=base ") && (strings.Contains(l, `msg="template published"`) || strings.Contains(l, `msg="template fetched"`)) {
			t.Log(l) // the figures for docs/benchmarks.md
		}
	}
	sb, err := bsrv.Client.CreateSandbox(ctx, client.CreateOptions{Template: name})
	if err != nil {
		t.Fatalf("create on B from %s: %v\n%s", name, err, bsrv.Logs())
	}
	defer sb.Kill(context.WithoutCancel(ctx))
	res := mustRun(t, ctx, sb, "cat /made; echo $MADE", nil)
	if got := strings.TrimSpace(res.Stdout); got != "made-on-a-42\na" {
		t.Fatalf("sandbox on B: %q, want what A's build made", got)
	}
	if logCount(bsrv.Logs(), "template fetched", name) == 0 {
		t.Fatalf("B's log does not say it fetched %s:\n%s", name, bsrv.Logs())
	}
	// Fetched once: a second create uses the local copy.
	sb2, err := bsrv.Client.CreateSandbox(ctx, client.CreateOptions{Template: name})
	if err != nil {
		t.Fatal(err)
	}
	sb2.Kill(context.WithoutCancel(ctx))
	if n := logCount(bsrv.Logs(), "template fetched", name); n != 1 {
		t.Fatalf("B fetched %s %d times, want once", name, n)
	}
	// A tag B lacks is fetched like a name.
	sb3, err := bsrv.Client.CreateSandbox(ctx, client.CreateOptions{Template: name + ":v1"})
	if err != nil {
		t.Fatalf("create on B from %s:v1: %v\n%s", name, err, bsrv.Logs())
	}
	res = mustRun(t, ctx, sb3, "cat /made", nil)
	sb3.Kill(context.WithoutCancel(ctx))
	if got := strings.TrimSpace(res.Stdout); got != "made-on-a-42" {
		t.Fatalf("sandbox on B from the tag: %q, want what A's build made", got)
	}
	// A name the bucket lacks is still a 404.
	if _, err := bsrv.Client.CreateSandbox(ctx, client.CreateOptions{Template: name + "-nope"}); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("create from a template no one has: %v, want ErrNotFound", err)
	}
}

// TestObjectStoreBadConfig checks that sbx serve refuses to start with an
// object store it cannot use, saying why.
func TestObjectStoreBadConfig(t *testing.T) {
	ep, bucket, ak, _ := harness.S3(t)
	harness.Require(t)
	bin := harness.Binaries(t)
	cases := []struct{ url, secret, want string }{
		{"s3://" + bucket + "?endpoint=" + ep, "wrong", "credentials refused"},
		{"s3://no-such-bucket-e2e?endpoint=" + ep, harness.S3SecretKey, "does not exist"},
		{"http://" + bucket, harness.S3SecretKey, "want s3://BUCKET"},
	}
	for _, tc := range cases {
		ctx := ctxFor(t, time.Minute)
		dir := t.TempDir()
		for _, d := range []string{dir, filepath.Dir(dir)} {
			if err := os.Chmod(d, 0o711); err != nil {
				t.Fatal(err)
			}
		}
		out, err := runServe(ctx, bin, dir, tc.url, ak, tc.secret)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("--object-store %s: %v, output %q; want a failure saying %q", tc.url, err, out, tc.want)
		}
	}
}

// runServe runs sbx serve with --object-store url until it exits, and
// returns its output.
func runServe(ctx context.Context, bin, dataDir, url, access, secret string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "sbx"), "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--internet=false", "--object-store", url)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+access, "AWS_SECRET_ACCESS_KEY="+secret, "SBX_API_KEY="+harness.NewAPIKey())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// logCount counts the lines of a server's log with message msg about
// template name.
// awaitLogged waits (a few seconds at most) until srv has logged msg for
// template name. The server logs before it answers, but the harness reads
// its log through a pipe: the line may arrive after the answer.
func awaitLogged(srv *harness.Server, msg, name string) bool {
	for deadline := time.Now().Add(10 * time.Second); ; {
		if logCount(srv.Logs(), msg, name) > 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond) // the log is the only sign of it
	}
}

func logCount(logs, msg, name string) int {
	n := 0
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "msg=\""+msg+"\"") && strings.Contains(l, " template="+name+" ") {
			n++
		}
	}
	return n
}
