package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// cgroupLimits reads sandbox id's memory limit (bytes) and CPU quota
// (cores) from the host's cgroups, v1 or v2.
func cgroupLimits(t *testing.T, id string) (memBytes int64, cpus float64) {
	t.Helper()
	read := func(p string) (string, bool) {
		b, err := os.ReadFile(p)
		return strings.TrimSpace(string(b)), err == nil
	}
	num := func(s string) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("cgroup value %q: %v", s, err)
		}
		return n
	}
	if v, ok := read("/sys/fs/cgroup/sbx/" + id + "/memory.max"); ok { // v2
		cpu, _ := read("/sys/fs/cgroup/sbx/" + id + "/cpu.max")
		quota, period, _ := strings.Cut(cpu, " ")
		return num(v), float64(num(quota)) / float64(num(period))
	}
	mem, ok := read("/sys/fs/cgroup/memory/sbx/" + id + "/memory.limit_in_bytes")
	if !ok {
		t.Fatalf("no memory cgroup for sandbox %s", id)
	}
	quota, ok1 := read("/sys/fs/cgroup/cpu/sbx/" + id + "/cpu.cfs_quota_us")
	period, ok2 := read("/sys/fs/cgroup/cpu/sbx/" + id + "/cpu.cfs_period_us")
	if !ok1 || !ok2 {
		t.Fatalf("no cpu cgroup for sandbox %s", id)
	}
	return num(mem), float64(num(quota)) / float64(num(period))
}

// TestCPUMemoryLimits checks where a sandbox's CPU and memory come from (the
// server's defaults, a template's, a create request's), that the cgroup
// limits really applied on the host and are seen inside, that lists report
// them, and that requests above the server's maxima get 400 in E2B's shape.
func TestCPUMemoryLimits(t *testing.T) {
	srv := harness.Start(t, "--cpus", "1", "--memory-mb", "256", "--max-cpus", "2", "--max-memory-mb", "1024")
	ctx := ctxFor(t, 3*time.Minute)
	c := srv.Client

	check := func(t *testing.T, sb *client.Sandbox, wantCPUs float64, wantMB int) {
		t.Helper()
		mem, cpus := cgroupLimits(t, sb.ID)
		if mem != int64(wantMB)<<20 || cpus != wantCPUs {
			t.Errorf("cgroup limits: %d bytes, %v cpus; want %d MiB, %v", mem, cpus, wantMB, wantCPUs)
		}
		info, err := c.GetSandbox(ctx, sb.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantCount := int(wantCPUs + 0.999)
		if info.CPUCount != wantCount || info.MemoryMB != wantMB {
			t.Errorf("GET /sandboxes/%s: cpuCount %d memoryMB %d, want %d and %d", sb.ID, info.CPUCount, info.MemoryMB, wantCount, wantMB)
		}
		all, err := c.ListSandboxes(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range all {
			if s.SandboxID == sb.ID && (s.CPUCount != wantCount || s.MemoryMB != wantMB) {
				t.Errorf("list: cpuCount %d memoryMB %d", s.CPUCount, s.MemoryMB)
			}
		}
	}

	t.Run("server defaults", func(t *testing.T) {
		sb, err := c.CreateSandbox(ctx, client.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer sb.Kill(context.WithoutCancel(ctx))
		// The base template sets no limits: the server's flags apply.
		check(t, sb, 1, 256)
	})

	t.Run("request overrides", func(t *testing.T) {
		sb, err := c.CreateSandbox(ctx, client.CreateOptions{CPUs: 1.5, MemoryMB: 300})
		if err != nil {
			t.Fatal(err)
		}
		defer sb.Kill(context.WithoutCancel(ctx))
		check(t, sb, 1.5, 300)
		// Inside, through the sandbox's own cgroup namespace.
		res := mustRun(t, ctx, sb, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max", nil)
		if strings.TrimSpace(res.Stdout) != strconv.Itoa(300<<20) {
			t.Errorf("memory limit seen inside: %+v", res)
		}
	})

	t.Run("template defaults and the CLI", func(t *testing.T) {
		tmpl := importFor(t, ctx, c, "limits", startImage(t), client.TemplateSettings{CPUs: ptr(2.0), MemoryMB: ptr(512)})
		d, err := c.InspectTemplate(ctx, tmpl)
		if err != nil || d.CPUCount != 2 || d.MemoryMB != 512 || !d.CPUCountSet || !d.MemoryMBSet {
			t.Fatalf("inspect: %+v %v", d, err)
		}
		base, err := c.InspectTemplate(ctx, "base")
		if err != nil || base.CPUCount != 1 || base.MemoryMB != 256 || base.CPUCountSet || base.MemoryMBSet {
			t.Fatalf("inspect base: %+v %v", base, err)
		}
		sb, err := c.CreateSandbox(ctx, client.CreateOptions{Template: tmpl})
		if err != nil {
			t.Fatal(err)
		}
		defer sb.Kill(context.WithoutCancel(ctx))
		check(t, sb, 2, 512)
		// The CLI's flags beat the template's.
		id := strings.TrimSpace(cliOK(t, ctx, srv, "create", "--template", tmpl, "--cpus", "0.5", "--memory-mb", "128"))
		defer c.KillSandbox(context.WithoutCancel(ctx), id)
		info := lsJSON(t, ctx, srv, id)
		if info.CPUCount != 1 || info.MemoryMB != 128 {
			t.Errorf("sbx ls --json: %+v", info)
		}
		if mem, cpus := cgroupLimits(t, id); mem != 128<<20 || cpus != 0.5 {
			t.Errorf("cgroup limits of the CLI's sandbox: %d bytes, %v cpus", mem, cpus)
		}

		// A template default above the server's maximum refuses creates
		// that do not override it, saying where the value came from.
		var d2 client.TemplateDetail
		decodeStrict(t, cliOK(t, ctx, srv, "template", "set", tmpl, "--memory-mb", "2048", "--json"), &d2)
		if d2.MemoryMB != 2048 || d2.CPUCount != 2 {
			t.Fatalf("sbx template set --memory-mb: %+v", d2)
		}
		_, err = c.CreateSandbox(ctx, client.CreateOptions{Template: tmpl})
		var apiErr *client.APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || !strings.Contains(apiErr.Message, "template \""+tmpl+"\"'s memoryMB 2048 is above the server maximum of 1024") {
			t.Errorf("create from a template above the maximum: %v", err)
		}
		if sb, err := c.CreateSandbox(ctx, client.CreateOptions{Template: tmpl, MemoryMB: 1024}); err != nil {
			t.Errorf("create overriding the template's memory: %v", err)
		} else {
			sb.Kill(ctx)
		}
		// Settings are the admin's: a plain key may inspect, not change.
		nk, err := c.CreateKey(ctx, "plain")
		if err != nil {
			t.Fatal(err)
		}
		plain := client.New(srv.URL, nk.Key)
		if _, err := plain.InspectTemplate(ctx, tmpl); err != nil {
			t.Errorf("inspect with a plain key: %v", err)
		}
		if _, err := plain.SetTemplate(ctx, tmpl, client.TemplateSettings{ReadyCmd: ptr("true")}); !errors.Is(err, client.ErrPermissionDenied) {
			t.Errorf("set with a plain key: %v, want permission denied", err)
		}
		if _, err := c.SetTemplate(ctx, tmpl, client.TemplateSettings{ReadyPort: ptr(70000)}); !errors.Is(err, client.ErrInvalidArgument) {
			t.Errorf("set ready port 70000: %v, want invalid argument", err)
		}
		if _, err := c.InspectTemplate(ctx, "no-such-template"); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("inspect of a missing template: %v", err)
		}
	})

	t.Run("above the maxima", func(t *testing.T) {
		for _, tc := range []struct{ body, want string }{
			{`{"templateID":"base","cpuCount":3}`, "cpuCount 3 is above the server maximum of 2"},
			{`{"templateID":"base","memoryMB":2048}`, "memoryMB 2048 is above the server maximum of 1024"},
			{`{"templateID":"base","cpuCount":0}`, "cpuCount must be a positive number"},
			{`{"templateID":"base","memoryMB":16}`, "memoryMB must be at least 32"},
			{`{"templateID":"base","memoryMB":"lots"}`, "malformed JSON"},
		} {
			req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v2/sandboxes", strings.NewReader(tc.body))
			req.Header.Set("X-API-Key", srv.APIKey)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			if resp.StatusCode != 400 || json.Unmarshal(b, &e) != nil || e.Code != 400 || !strings.Contains(e.Message, tc.want) {
				t.Errorf("%s: %d %s, want 400 %q", tc.body, resp.StatusCode, b, tc.want)
			}
		}
		// Nothing was created by the refused requests.
		if all, err := c.ListSandboxes(ctx, nil); err != nil || len(all) != 0 {
			t.Errorf("sandboxes after refused creates: %v %v", all, err)
		}
		_, stderr, code := srv.CLI(ctx, nil, "create", "--cpus", "3")
		if code == 0 || !strings.Contains(stderr, "above the server maximum") {
			t.Errorf("sbx create --cpus 3: code %d stderr %q", code, stderr)
		}
	})
}
