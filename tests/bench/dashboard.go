package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// dashboardRows measures the dashboard against the API calls it stands
// for, side by side (-only dashboard):
//
//   - first load: what a browser without a cache fetches before the
//     sandbox list is interactive (index.html, its script and stylesheet,
//     the session, the stream's first snapshot), against one GET
//     /v2/sandboxes with the API key;
//   - a state-changing action by the page (cookie and CSRF token): a
//     sandbox's timeout set, against the same call with the API key;
//   - a kill by the page until the page's stream tells of it, against a
//     kill with the API key until its answer;
//   - a directory listed by the dashboard's files route, against the SDK's
//     List of the same directory.
//
// n is the repetitions of each (kills: at most 20, each costs two creates).
func dashboardRows(ctx context.Context, srv *harness.Server, c *client.Client, n int) []row {
	hc := &http.Client{}
	get := func(path string, h http.Header) (*http.Response, []byte) {
		req := must(http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil))
		for k, v := range h {
			req.Header[k] = v
		}
		resp := must(hc.Do(req))
		defer resp.Body.Close()
		b := must(io.ReadAll(resp.Body))
		return resp, b
	}
	signIn := func() (http.Header, string) {
		body, _ := json.Marshal(map[string]string{"apiKey": srv.APIKey})
		resp := must(hc.Post(srv.URL+"/dashboard/api/session", "application/json", bytes.NewReader(body)))
		defer resp.Body.Close()
		var s struct {
			CSRFToken string `json:"csrfToken"`
		}
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&s) != nil || s.CSRFToken == "" {
			fatalf("dashboard sign-in: %d", resp.StatusCode)
		}
		for _, ck := range resp.Cookies() {
			if ck.Name == "sbx_session" {
				return http.Header{"Cookie": {ck.Name + "=" + ck.Value}}, s.CSRFToken
			}
		}
		fatalf("dashboard sign-in set no cookie")
		return nil, ""
	}
	cookie, csrf := signIn()
	key := http.Header{"X-Api-Key": {srv.APIKey}}

	// A few sandboxes for the list to hold.
	var held []*client.Sandbox
	for range 5 {
		held = append(held, must(c.CreateSandbox(ctx, client.CreateOptions{Timeout: 10 * time.Minute})))
	}
	defer func() {
		for _, sb := range held {
			sb.Kill(ctx)
		}
	}()

	// openStream opens the page's sandbox stream and returns its first
	// event and a function that reads the next.
	openStream := func(ctx context.Context) (string, func() (string, string)) {
		req := must(http.NewRequestWithContext(ctx, "GET", srv.URL+"/dashboard/api/sandboxes/stream", nil))
		req.Header["Cookie"] = cookie["Cookie"]
		resp := must(hc.Do(req))
		if resp.StatusCode != 200 {
			fatalf("dashboard stream: %d", resp.StatusCode)
		}
		br := bufio.NewReaderSize(resp.Body, 1<<20)
		next := func() (string, string) {
			var kind, data string
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return "", ""
				}
				line = strings.TrimRight(line, "\n")
				switch {
				case line == "" && kind != "":
					return kind, data
				case strings.HasPrefix(line, "event: "):
					kind = line[7:]
				case strings.HasPrefix(line, "data: "):
					data = line[6:]
				}
			}
		}
		kind, _ := next()
		return kind, next
	}

	assetRe := regexp.MustCompile(`(?:src|href)="(/dashboard/assets/[^"]+)"`)
	var load, list []time.Duration
	for i := range n + 1 {
		t0 := time.Now()
		resp, html := get("/dashboard/", nil)
		if resp.StatusCode != 200 {
			fatalf("GET /dashboard/: %d (build the assets: scripts/build-dashboard.sh)", resp.StatusCode)
		}
		assets := assetRe.FindAllSubmatch(html, -1)
		if len(assets) == 0 {
			fatalf("GET /dashboard/: no assets in %s", html)
		}
		for _, a := range assets {
			if r, _ := get(string(a[1]), nil); r.StatusCode != 200 {
				fatalf("GET %s: %d", a[1], r.StatusCode)
			}
		}
		if r, _ := get("/dashboard/api/session", cookie); r.StatusCode != 200 {
			fatalf("GET /dashboard/api/session: %d", r.StatusCode)
		}
		sctx, cancel := context.WithCancel(ctx)
		if kind, _ := openStream(sctx); kind != "snapshot" {
			fatalf("dashboard stream: first event %q", kind)
		}
		d := time.Since(t0)
		cancel()
		t0 = time.Now()
		if r, _ := get("/v2/sandboxes", key); r.StatusCode != 200 {
			fatalf("GET /v2/sandboxes: %d", r.StatusCode)
		}
		if i > 0 { // the first of each warms the connection
			load = append(load, d)
			list = append(list, time.Since(t0))
		}
	}

	// An action: the sandbox's timeout set, by the page and by the key.
	sb := held[0]
	post := func(path string, h http.Header, body string) int {
		req := must(http.NewRequestWithContext(ctx, "POST", srv.URL+path, strings.NewReader(body)))
		for k, v := range h {
			req.Header[k] = v
		}
		req.Header.Set("Content-Type", "application/json")
		resp := must(hc.Do(req))
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	page := cookie.Clone()
	page.Set("X-CSRF-Token", csrf)
	var setPage, setKey []time.Duration
	for range n {
		t0 := time.Now()
		if st := post("/sandboxes/"+sb.ID+"/timeout", page, `{"timeout":600}`); st/100 != 2 {
			fatalf("set timeout by the page: %d", st)
		}
		setPage = append(setPage, time.Since(t0))
		t0 = time.Now()
		if st := post("/sandboxes/"+sb.ID+"/timeout", key, `{"timeout":600}`); st/100 != 2 {
			fatalf("set timeout by key: %d", st)
		}
		setKey = append(setKey, time.Since(t0))
	}

	// A kill by the page, until its stream tells of it; a kill by key.
	del := func(id string, h http.Header) {
		req := must(http.NewRequestWithContext(ctx, "DELETE", srv.URL+"/sandboxes/"+id, nil))
		for k, v := range h {
			req.Header[k] = v
		}
		resp := must(hc.Do(req))
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 204 {
			fatalf("kill %s: %d", id, resp.StatusCode)
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, next := openStream(sctx)
	var killPage, killKey []time.Duration
	for range min(n, 20) {
		a := must(c.CreateSandbox(ctx, client.CreateOptions{}))
		b := must(c.CreateSandbox(ctx, client.CreateOptions{}))
		t0 := time.Now()
		del(a.ID, page)
		for {
			kind, data := next()
			if kind == "" {
				fatalf("the dashboard stream ended")
			}
			if kind == "remove" && strings.Contains(data, fmt.Sprintf("%q", a.ID)) {
				break
			}
		}
		killPage = append(killPage, time.Since(t0))
		t0 = time.Now()
		del(b.ID, key)
		killKey = append(killKey, time.Since(t0))
	}

	// A directory listed by the dashboard's route and by the SDK.
	var lsPage, lsSDK []time.Duration
	for range n {
		t0 := time.Now()
		if r, b := get("/dashboard/api/sandboxes/"+sb.ID+"/files?path=/etc", cookie); r.StatusCode != 200 {
			fatalf("dashboard files: %d %s", r.StatusCode, b)
		}
		lsPage = append(lsPage, time.Since(t0))
		t0 = time.Now()
		must(sb.List(ctx, "/etc", 1, nil))
		lsSDK = append(lsSDK, time.Since(t0))
	}
	return []row{
		{"dashboard first load (index, script, styles, session, stream's first snapshot; 5 sandboxes), vs GET /v2/sandboxes by key", load, list, ""},
		{"dashboard action: set a sandbox's timeout (cookie + CSRF), vs the same by key", setPage, setKey, ""},
		{"dashboard kill until its stream tells of it, vs a kill by key until its answer", killPage, killKey, ""},
		{"dashboard files route: list /etc, vs the SDK's List", lsPage, lsSDK, ""},
	}
}
