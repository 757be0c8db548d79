package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestTemplateTagsCLI drives `sbx template tag|tags|untag` (and through
// them the Go SDK's AssignTemplateTags, TemplateTags, RemoveTemplateTags)
// against a real server: tags point at a build, a sandbox starts from
// name:tag, a tag in use is kept, and bad input (an unknown template or
// tag, a bad tag, another team's key) gets its 4xx.
func TestTemplateTagsCLI(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	c := srv.Client

	archive := filepath.Join(t.TempDir(), "img.tar")
	writeCatImage(t, filepath.Join(harness.TemplatesDir(), "base", "rootfs"), archive)
	// The templates directory is shared between test runs: a name of our
	// own, removed afterwards with its tags.
	tmpl := fmt.Sprintf("e2e-tags-%d", os.Getpid())
	cliOK(t, ctx, srv, "template", "import", tmpl, "--tar", archive)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.DeleteTemplate(ctx, tmpl); err != nil && !client.IsNotFound(err) {
			t.Errorf("delete template %s: %v", tmpl, err)
		}
	})

	out, stderr, code := srv.CLI(ctx, nil, "template", "tag", tmpl, "v1", "prod")
	if code != 0 || out != tmpl+":v1\n"+tmpl+":prod\n" || !strings.Contains(stderr, "tagged build ") {
		t.Fatalf("sbx template tag: exit %d\nstdout %q\nstderr %q", code, out, stderr)
	}
	build := strings.TrimSpace(strings.TrimPrefix(stderr[strings.Index(stderr, "tagged build "):], "tagged build "))

	var tags []client.TemplateTag
	decodeStrict(t, cliOK(t, ctx, srv, "template", "tags", tmpl, "--json"), &tags)
	names := func(tags []client.TemplateTag) []string {
		var n []string
		for _, tg := range tags {
			n = append(n, tg.Tag)
		}
		return n
	}
	if !slices.Equal(names(tags), []string{"default", "prod", "v1"}) {
		t.Fatalf("tags: %+v", tags)
	}
	for _, tg := range tags {
		if tg.BuildID != build || tg.CreatedAt.IsZero() {
			t.Errorf("tag %+v: want build %s and a time", tg, build)
		}
	}
	table := strings.Split(strings.TrimSpace(cliOK(t, ctx, srv, "template", "tags", tmpl)), "\n")
	if len(table) != 4 || !slices.Equal(strings.Fields(table[0]), []string{"TAG", "BUILD", "ASSIGNED"}) || strings.Fields(table[1])[0] != "default" || strings.Fields(table[2])[1] != build {
		t.Fatalf("sbx template tags:\n%s", strings.Join(table, "\n"))
	}
	// The SDK sees what the CLI did.
	if sdk, err := c.TemplateTags(ctx, tmpl); err != nil || !slices.Equal(names(sdk), names(tags)) {
		t.Fatalf("TemplateTags = %+v, %v", sdk, err)
	}

	// A sandbox from name:tag runs the tagged build; its tag is kept while
	// it runs.
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Template: tmpl + ":prod"})
	if err != nil {
		t.Fatalf("create from %s:prod: %v", tmpl, err)
	}
	var stdout bytes.Buffer
	if code, err := sb.Exec(ctx, client.ExecOptions{Cmd: "/usr/bin/cat", Args: []string{"/etc/motd-sbx"}, User: "root", Stdout: &stdout}); err != nil || code != 0 || stdout.String() != "imported\n" {
		t.Fatalf("cat in a sandbox of %s:prod: %d %v %q", tmpl, code, err, stdout.String())
	}
	if _, stderr, code := srv.CLI(ctx, nil, "template", "untag", tmpl+":prod"); code != 1 || !strings.Contains(stderr, "used by 1 sandbox") || !strings.Contains(stderr, "(HTTP 409)") {
		t.Errorf("untag of a tag in use: exit %d, stderr %q", code, stderr)
	}
	if err := sb.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if out := cliOK(t, ctx, srv, "template", "untag", tmpl+":prod"); out != tmpl+":prod\n" {
		t.Errorf("sbx template untag: stdout %q", out)
	}
	if tags, err := c.TemplateTags(ctx, tmpl); err != nil || !slices.Equal(names(tags), []string{"default", "v1"}) {
		t.Fatalf("tags after untag: %+v, %v", tags, err)
	}

	// Bad input, each its own status, and nothing changes.
	other, err := c.CreateTeam(ctx, fmt.Sprintf("tags-other-%d", os.Getpid()), client.TeamLimits{})
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := c.CreateTeamKey(ctx, client.KeyOptions{Name: "other", Team: other.ID})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key  string
		args []string
		want string
	}{
		{srv.APIKey, []string{"template", "tag", "no-such-" + tmpl, "v2"}, `not found (HTTP 404)`},
		{srv.APIKey, []string{"template", "tag", tmpl + ":nope", "v2"}, `not found (HTTP 404)`},
		{srv.APIKey, []string{"template", "tag", tmpl, "Bad_Tag"}, `invalid template tag "Bad_Tag"`},
		{srv.APIKey, []string{"template", "tag", "Bad Name", "v2"}, `invalid template name`},
		{srv.APIKey, []string{"template", "tags", "no-such-" + tmpl}, `not found (HTTP 404)`},
		{srv.APIKey, []string{"template", "untag", tmpl + ":nope"}, `has no tag "nope" (HTTP 404)`},
		{otherKey.Key, []string{"template", "tag", tmpl, "stolen"}, `not found (HTTP 404)`},
		{otherKey.Key, []string{"template", "untag", tmpl + ":v1"}, `not found (HTTP 404)`},
	} {
		_, stderr, code := cliAs(ctx, srv, tc.key, tc.args...)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("sbx %q: exit %d, stderr %q; want exit 1 and %q", tc.args, code, stderr, tc.want)
		}
	}
	if _, stderr, code := cliAs(ctx, srv, srv.APIKey, "template", "tag", tmpl, "Bad_Tag"); !strings.Contains(stderr, "(HTTP 400)") {
		t.Errorf("bad tag: exit %d, stderr %q; want HTTP 400", code, stderr)
	}
	otherClient := client.New(srv.URL, otherKey.Key)
	if _, err := otherClient.AssignTemplateTags(ctx, tmpl, "stolen"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("another team's AssignTemplateTags: %v, want not found", err)
	}
	if err := otherClient.RemoveTemplateTags(ctx, tmpl, "v1"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("another team's RemoveTemplateTags: %v, want not found", err)
	}
	if tags, err := c.TemplateTags(ctx, tmpl); err != nil || !slices.Equal(names(tags), []string{"default", "v1"}) {
		t.Fatalf("tags after the bad requests: %+v, %v", tags, err)
	}
}
