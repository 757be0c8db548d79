package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
	"github.com/sbxdev/sbx/wire"
)

// TestWireStrict decodes what a real server answers on the main routes
// (sandboxes, snapshots, forks, pause and resume, metrics, templates, keys, errors,
// and both kinds of template build) into package wire's types with
// unknown fields refused: a field the server sends that wire lacks fails
// here, which keeps wire's golden files honest about the API.
func TestWireStrict(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	callRaw := func(method, path, contentType string, body []byte, wantStatus int, out any) {
		t.Helper()
		var r io.Reader
		if body != nil {
			r = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, r)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-API-Key", srv.APIKey)
		if body != nil {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != wantStatus {
			t.Fatalf("%s %s: status %d, want %d\n%s", method, path, resp.StatusCode, wantStatus, raw)
		}
		if out != nil {
			decodeStrict(t, string(raw), out)
		}
	}
	call := func(method, path string, body any, wantStatus int, out any) {
		t.Helper()
		var b []byte
		if body != nil {
			var err error
			if b, err = json.Marshal(body); err != nil {
				t.Fatal(err)
			}
		}
		callRaw(method, path, "application/json", b, wantStatus, out)
	}
	ptr := func(v int64) *int64 { return &v }

	var health wire.Health
	call("GET", "/health", nil, 200, &health)
	var sb wire.Sandbox
	call("POST", "/v2/sandboxes", wire.NewSandbox{TemplateID: "base", Timeout: ptr(300), Metadata: map[string]string{"k": "v"},
		Network: &wire.SandboxNetwork{AllowOut: []string{"1.1.1.1"}}}, 201, &sb)
	if sb.SandboxID == "" || sb.EnvdAccessToken == "" {
		t.Fatalf("created %+v", sb)
	}
	var list []wire.ListedSandbox
	call("GET", "/v2/sandboxes", nil, 200, &list)
	call("GET", "/sandboxes", nil, 200, &list)
	var detail wire.SandboxDetail
	call("GET", "/sandboxes/"+sb.SandboxID, nil, 200, &detail)
	if detail.SandboxID != sb.SandboxID || detail.Metadata["k"] != "v" || detail.Network == nil || len(detail.Network.AllowOut) != 1 {
		t.Errorf("detail %+v", detail)
	}
	// Volumes, and their content routes with the volume's token.
	var vol wire.VolumeAndToken
	call("POST", "/volumes", wire.NewVolume{Name: "wire-vol", SizeMB: ptr(16)}, 201, &vol)
	var vols []wire.Volume
	call("GET", "/volumes", nil, 200, &vols)
	call("GET", "/volumes/"+vol.VolumeID, nil, 200, &vol)
	content := func(method, route, q string, body []byte, wantStatus int, out any) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+"/volumecontent/"+vol.VolumeID+"/"+route+"?"+q, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+vol.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != wantStatus {
			t.Fatalf("%s %s: status %d, want %d\n%s", method, route, resp.StatusCode, wantStatus, raw)
		}
		if out != nil {
			decodeStrict(t, string(raw), out)
		}
	}
	var entry wire.VolumeEntryStat
	var entries []wire.VolumeEntryStat
	content("PUT", "file", "path=/d/f", []byte("x"), 201, &entry)
	content("POST", "dir", "path=/e", nil, 201, &entry)
	content("GET", "path", "path=/d/f", nil, 200, &entry)
	content("PATCH", "path", "path=/d/f", []byte(`{"mode":384}`), 200, &entry)
	content("GET", "dir", "path=/&depth=2", nil, 200, &entries)
	content("DELETE", "path", "path=/e", nil, 204, nil)
	var vsb wire.Sandbox
	call("POST", "/v2/sandboxes", wire.NewSandbox{TemplateID: "base", VolumeMounts: []wire.SandboxVolumeMount{{Name: "wire-vol", Path: "/vol"}}}, 201, &vsb)
	call("GET", "/sandboxes/"+vsb.SandboxID, nil, 200, &detail)
	if len(detail.VolumeMounts) != 1 || detail.VolumeMounts[0].Path != "/vol" {
		t.Errorf("volume mounts in the detail: %+v", detail.VolumeMounts)
	}
	call("DELETE", "/volumes/"+vol.VolumeID, nil, 409, &wire.Error{})
	call("DELETE", "/sandboxes/"+vsb.SandboxID, nil, 204, nil)
	call("DELETE", "/volumes/"+vol.VolumeID, nil, 204, nil)

	var conn wire.Sandbox
	call("POST", "/sandboxes/"+sb.SandboxID+"/connect", wire.ConnectRequest{Timeout: ptr(300)}, 200, &conn)

	var snap wire.Snapshot
	call("POST", "/sandboxes/"+sb.SandboxID+"/snapshots", wire.SnapshotRequest{Name: "wire-" + strings.ToLower(sb.SandboxID[:6])}, 201, &snap)
	var snaps []wire.Snapshot
	call("GET", "/snapshots?sandboxID="+sb.SandboxID, nil, 200, &snaps)
	var forks []wire.ForkResult
	n := 1
	call("POST", "/sandboxes/"+sb.SandboxID+"/fork", wire.ForkRequest{Count: &n, Timeout: ptr(300)}, 201, &forks)
	if len(forks) != 1 || forks[0].Sandbox == nil {
		t.Errorf("fork %+v", forks)
	}

	var logs wire.SandboxLogsV2
	call("GET", "/v2/sandboxes/"+sb.SandboxID+"/logs", nil, 200, &logs)
	if len(logs.Logs) == 0 {
		t.Errorf("no log entries for a running sandbox")
	}
	var logsV1 wire.SandboxLogs
	call("GET", "/sandboxes/"+sb.SandboxID+"/logs?limit=5", nil, 200, &logsV1)

	call("POST", "/sandboxes/"+sb.SandboxID+"/pause", wire.PauseRequest{}, 204, nil)
	var resumed wire.Sandbox
	call("POST", "/sandboxes/"+sb.SandboxID+"/resume", wire.ResumeRequest{}, 201, &resumed)

	// Metrics: the team has a sample from the sampler's first round.
	var metrics []wire.SandboxMetric
	call("GET", "/sandboxes/"+sb.SandboxID+"/metrics", nil, 200, &metrics)
	var many wire.SandboxesWithMetrics
	call("GET", "/sandboxes/metrics?sandbox_ids="+sb.SandboxID, nil, 200, &many)
	var teams []wire.Team
	call("GET", "/teams", nil, 200, &teams)
	var teamMetrics []wire.TeamMetric
	call("GET", "/teams/default/metrics", nil, 200, &teamMetrics)
	if len(teamMetrics) == 0 {
		t.Error("no team metric")
	}
	var mx wire.MaxTeamMetric
	call("GET", "/teams/default/metrics/max?metric=concurrent_sandboxes", nil, 200, &mx)
	var usage wire.UsageReport
	call("GET", "/sbx/v1/usage?by=sandbox", nil, 200, &usage)
	if usage.TeamID != "default" || usage.By != "sandbox" {
		t.Errorf("usage by sandbox: %+v", usage)
	}

	var templates []wire.Template
	call("GET", "/templates", nil, 200, &templates)
	var td wire.TemplateDetail
	call("GET", "/sbx/v1/templates/base", nil, 200, &td)
	var alias wire.TemplateAlias
	call("GET", "/templates/aliases/base", nil, 200, &alias)
	var key wire.Key
	call("POST", "/sbx/v1/keys", wire.NewKey{Name: "wire"}, 201, &key)
	var keys []wire.Key
	call("GET", "/sbx/v1/keys", nil, 200, &keys)
	var nodes []wire.Node
	call("GET", "/nodes", nil, 200, &nodes)
	if len(nodes) != 1 || nodes[0].Status != "ready" {
		t.Errorf("nodes %+v", nodes)
	}
	var node wire.NodeDetail
	call("GET", "/nodes/"+nodes[0].ID, nil, 200, &node)
	var e wire.Error
	call("GET", "/sandboxes/nope", nil, 404, &e)
	if e.Code != 404 || e.Message == "" {
		t.Errorf("error body %+v", e)
	}

	// A Dockerfile build, sbx's routes: the build, then its log lines.
	// Templates are shared by test runs: names of this run's own, removed
	// at the end.
	name := fmt.Sprintf("e2e-wire-%d", os.Getpid())
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	df := "FROM base\nRUN echo built\n"
	tw.WriteHeader(&tar.Header{Name: "Dockerfile", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(df))})
	tw.Write([]byte(df))
	tw.Close()
	var bld wire.Build
	callRaw("POST", "/sbx/v1/templates/builds?name="+name, "application/x-tar", ctxTar.Bytes(), 202, &bld)
	t.Cleanup(func() { removeTemplate(t, srv, name) })
	lines := followBuild(t, ctx, srv, bld.BuildID)
	if last := lines[len(lines)-1]; last.Kind != "end" || last.Status != "ready" {
		t.Fatalf("build ended with %+v", last)
	}
	call("GET", "/sbx/v1/templates/builds/"+bld.BuildID, nil, 200, &bld)

	// E2B's template builder routes.
	e2bName := name + "-e2b"
	var br wire.TemplateBuildResponse
	call("POST", "/v3/templates", wire.TemplateBuildRequest{Name: e2bName}, 202, &br)
	t.Cleanup(func() { removeTemplate(t, srv, e2bName) })
	var files wire.TemplateFiles
	call("GET", "/templates/"+e2bName+"/files/"+strings.Repeat("0", 64), nil, 201, &files)
	if files.Present || files.URL == "" {
		t.Errorf("files link %+v", files)
	}
	call("POST", "/v2/templates/"+e2bName+"/builds/"+br.BuildID, wire.TemplateBuildStart{
		FromTemplate: "base", Steps: []wire.TemplateBuildStep{{Type: "RUN", Args: []string{"echo built"}}},
	}, 202, nil)
	followBuild(t, ctx, srv, br.BuildID)
	var info wire.TemplateBuildInfo
	call("GET", "/templates/"+e2bName+"/builds/"+br.BuildID+"/status", nil, 200, &info)
	if info.Status != "ready" || len(info.LogEntries) == 0 {
		t.Errorf("build status %+v", info)
	}

	// Tags: a tagged build's status, then the tag routes.
	var tbr wire.TemplateBuildResponse
	call("POST", "/v3/templates", wire.TemplateBuildRequest{Name: e2bName + ":v1", Tags: []string{"stable"}}, 202, &tbr)
	if tbr.TemplateID != e2bName || !slices.Equal(tbr.Tags, []string{"v1", "stable"}) {
		t.Errorf("tagged build request answered %+v", tbr)
	}
	call("POST", "/v2/templates/"+e2bName+"/builds/"+tbr.BuildID, wire.TemplateBuildStart{
		FromTemplate: "base", Steps: []wire.TemplateBuildStep{{Type: "ENV", Args: []string{"T", "v1"}}},
	}, 202, nil)
	followBuild(t, ctx, srv, tbr.BuildID)
	call("GET", "/templates/"+e2bName+"/builds/"+tbr.BuildID+"/status", nil, 200, &info)
	if info.Status != "ready" || info.TemplateID != e2bName {
		t.Errorf("tagged build status %+v", info)
	}
	var assigned wire.AssignedTemplateTags
	call("POST", "/templates/tags", wire.AssignTemplateTags{Target: e2bName + ":v1", Tags: []string{"prod"}}, 201, &assigned)
	if assigned.BuildID != tbr.BuildID || !slices.Equal(assigned.Tags, []string{"prod"}) {
		t.Errorf("assigned %+v, want build %s", assigned, tbr.BuildID)
	}
	var tags []wire.TemplateTag
	call("GET", "/templates/"+e2bName+"/tags", nil, 200, &tags)
	if len(tags) != 4 || tags[0].Tag != "default" || tags[0].BuildID != br.BuildID {
		t.Errorf("tags %+v", tags)
	}
	call("DELETE", "/templates/tags", wire.DeleteTemplateTags{Name: e2bName, Tags: []string{"prod"}}, 204, nil)

	// Clean up what the test made (the harness kills sandboxes).
	c := srv.Client
	for _, f := range forks {
		if f.Sandbox != nil {
			c.KillSandbox(context.WithoutCancel(ctx), f.Sandbox.SandboxID)
		}
	}
	if err := c.KillSandbox(ctx, sb.SandboxID); err != nil {
		t.Error(err)
	}
	if err := c.DeleteSnapshot(ctx, snap.SnapshotID); err != nil {
		t.Errorf("delete snapshot: %v", err)
	}
}

// followBuild reads build id's log to its end, each line decoded strictly
// into a wire.BuildEvent.
func followBuild(t *testing.T, ctx context.Context, srv *harness.Server, id string) []wire.BuildEvent {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/sbx/v1/templates/builds/"+id+"/logs?follow=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", srv.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("build logs: status %d", resp.StatusCode)
	}
	var lines []wire.BuildEvent
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var e wire.BuildEvent
		decodeStrict(t, sc.Text(), &e)
		lines = append(lines, e)
	}
	if len(lines) == 0 {
		t.Fatalf("build %s: no log lines (%v)", id, sc.Err())
	}
	return lines
}

// removeTemplate deletes template name from the shared templates
// directory, if it is there.
func removeTemplate(t *testing.T, srv *harness.Server, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Client.DeleteTemplate(ctx, name); err != nil && !client.IsNotFound(err) {
		t.Errorf("delete template %s: %v", name, err)
	}
}
