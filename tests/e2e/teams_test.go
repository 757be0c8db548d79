package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/tests/harness"
	"github.com/sbxdev/sbx/wire"
)

// apiRoutes returns the patterns that internal/api's routes method
// registers, read from its source (an http.ServeMux cannot list them), so
// that a route added there without a case below fails TestTeamIsolation.
func apiRoutes(t *testing.T) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(harness.RepoRoot(), "internal", "api", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || fn.Name.Name != "routes" {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") || len(call.Args) != 2 {
					return true
				}
				lit, ok := call.Args[0].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("%s: a route pattern that is not a string literal", fset.Position(call.Pos()))
				}
				p, _ := strconv.Unquote(lit.Value)
				routes = append(routes, p)
				return true
			})
		}
	}
	if len(routes) < 50 {
		t.Fatalf("found %d routes in internal/api's routes method; update this test", len(routes))
	}
	return routes
}

// teamSend makes a request with key (none when empty) and returns its status
// and body.
func teamSend(t *testing.T, ctx context.Context, method, url, key string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// must sends a request that must answer want, and decodes its body into
// out when out is not nil.
func must(t *testing.T, ctx context.Context, method, url, key string, body any, want int, out any) {
	t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	code, got := teamSend(t, ctx, method, url, key, b)
	if code != want {
		t.Fatalf("%s %s = %d %s; want %d", method, url, code, got, want)
	}
	if out != nil {
		if err := json.Unmarshal(got, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, got)
		}
	}
}

// TestTeamIsolation is the done-when for teams: a key of team
// beta cannot see or touch team alpha's sandbox, snapshot, volume or
// webhook through any route of the API. Every route internal/api
// registers is called with beta's key and alpha's ids; a route without a
// case here fails the test.
func TestTeamIsolation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv := harness.Start(t, "--internet=false", "--webhook-allow", "127.0.0.1/32")

	// Teams and keys through the CLI, as an operator makes them.
	teamID := map[string]string{}
	key := map[string]string{}
	for _, name := range []string{"alpha", "beta"} {
		out, stderr, code := srv.CLI(ctx, nil, "team", "create", name, "--max-sandboxes", "0")
		if code != 0 {
			t.Fatalf("sbx team create %s: %d %s", name, code, stderr)
		}
		teamID[name] = strings.TrimSpace(out)
		out, stderr, code = srv.CLI(ctx, nil, "key", "create", "--team", name, "--name", name)
		if code != 0 {
			t.Fatalf("sbx key create --team %s: %d %s", name, code, stderr)
		}
		key[name] = strings.TrimSpace(out)
	}
	out, _, code := srv.CLI(ctx, nil, "team", "ls", "--json")
	var teams []wire.TeamInfo
	if err := json.Unmarshal([]byte(out), &teams); code != 0 || err != nil || len(teams) != 3 || teams[0].ID != "default" || teams[1].Name != "alpha" {
		t.Fatalf("sbx team ls = %d %s %v; want default, alpha and beta", code, out, err)
	}
	if _, _, code := srv.CLI(ctx, nil, "team", "create", "alpha"); code == 0 {
		t.Fatal("a second team named alpha was created")
	}

	// Alpha's objects.
	a, u := key["alpha"], srv.URL
	var sb wire.Sandbox
	must(t, ctx, "POST", u+"/sandboxes", a, map[string]any{"templateID": "base", "timeout": 600}, 201, &sb)
	var snap wire.Snapshot
	must(t, ctx, "POST", u+"/sandboxes/"+sb.SandboxID+"/snapshots", a, map[string]any{"name": "alpha-snap"}, 201, &snap)
	var vol wire.VolumeAndToken
	must(t, ctx, "POST", u+"/volumes", a, map[string]any{"name": "alpha-vol"}, 201, &vol)
	var hook wire.Webhook
	must(t, ctx, "POST", u+"/events/webhooks", a, map[string]any{"name": "h", "url": "http://127.0.0.1:1/hook", "events": []string{wire.EventKilled}, "signatureSecret": "s3cret-s3cret"}, 201, &hook)
	var alphaKeys []wire.TeamAPIKey
	must(t, ctx, "GET", u+"/api-keys", a, nil, 200, &alphaKeys)
	if len(alphaKeys) != 1 || alphaKeys[0].Name != "alpha" {
		t.Fatalf("GET /api-keys with alpha's key = %+v; want its one key", alphaKeys)
	}
	var sec wire.Secret
	must(t, ctx, "POST", u+"/secrets", a, map[string]any{"name": "shared-name", "value": "alpha-secret-value"}, 201, &sec)
	alphaIDs := []string{sb.SandboxID, snap.SnapshotID, vol.VolumeID, hook.ID, vol.Token, teamID["alpha"], alphaKeys[0].ID, sec.SecretID, "alpha-secret-value"}

	// What each route answers beta's key holding alpha's ids. Path
	// values are alpha's objects; 0 in status means the route is public
	// or a list, and must answer 2xx without any of alpha's ids in it.
	type call struct {
		status int
		body   any
		query  string
	}
	const (
		notFound  = http.StatusNotFound
		forbidden = http.StatusForbidden
		list      = 0
	)
	cases := map[string]call{
		"GET /health":                                         {status: list},
		"GET /.well-known/openid-configuration":               {status: list},
		"GET /.well-known/jwks.json":                          {status: list},
		"POST /sandboxes":                                     {status: notFound, body: map[string]any{"templateID": snap.SnapshotID}},
		"POST /v2/sandboxes":                                  {status: notFound, body: map[string]any{"templateID": "base", "volumeMounts": []map[string]string{{"name": "alpha-vol", "path": "/data"}}}},
		"GET /sandboxes":                                      {status: list},
		"GET /v2/sandboxes":                                   {status: list, query: "?state=running,paused"},
		"GET /sandboxes/{id}":                                 {status: notFound},
		"DELETE /sandboxes/{id}":                              {status: notFound},
		"POST /sandboxes/{id}/timeout":                        {status: notFound, body: map[string]any{"timeout": 30}},
		"POST /sandboxes/{id}/refreshes":                      {status: notFound, body: map[string]any{"duration": 30}},
		"POST /sandboxes/{id}/connect":                        {status: notFound, body: map[string]any{"timeout": 30}},
		"POST /v2/sandboxes/{id}/connect":                     {status: notFound, body: map[string]any{"timeout": 30}},
		"POST /sandboxes/{id}/pause":                          {status: notFound},
		"POST /sandboxes/{id}/resume":                         {status: notFound, body: map[string]any{}},
		"POST /sandboxes/{id}/snapshots":                      {status: notFound, body: map[string]any{}},
		"POST /sandboxes/{id}/fork":                           {status: notFound, body: map[string]any{}},
		"GET /snapshots":                                      {status: list},
		"PUT /sandboxes/{id}/network":                         {status: notFound, body: map[string]any{"allowOut": []string{"10.0.0.1"}}},
		"GET /v2/sandboxes/{id}/logs":                         {status: notFound},
		"GET /sandboxes/{id}/logs":                            {status: notFound},
		"GET /volumes":                                        {status: list},
		"POST /volumes":                                       {status: http.StatusCreated, body: map[string]any{"name": "beta-vol"}},
		"GET /volumes/{volumeID}":                             {status: notFound},
		"DELETE /volumes/{volumeID}":                          {status: notFound},
		"GET /volumecontent/{volumeID}/path":                  {status: http.StatusUnauthorized, query: "?path=/"},
		"PATCH /volumecontent/{volumeID}/path":                {status: http.StatusUnauthorized, query: "?path=/", body: map[string]any{}},
		"DELETE /volumecontent/{volumeID}/path":               {status: http.StatusUnauthorized, query: "?path=/x"},
		"GET /volumecontent/{volumeID}/dir":                   {status: http.StatusUnauthorized, query: "?path=/"},
		"POST /volumecontent/{volumeID}/dir":                  {status: http.StatusUnauthorized, query: "?path=/x"},
		"GET /volumecontent/{volumeID}/file":                  {status: http.StatusUnauthorized, query: "?path=/x"},
		"PUT /volumecontent/{volumeID}/file":                  {status: http.StatusUnauthorized, query: "?path=/x"},
		"GET /sandboxes/{id}/metrics":                         {status: notFound},
		"GET /secrets":                                        {status: list},
		"POST /secrets":                                       {status: http.StatusCreated, body: map[string]any{"name": "shared-name", "value": "beta's"}},
		"GET /secrets/{secretID}":                             {status: notFound},
		"POST /secrets/{secretID}":                            {status: notFound, body: map[string]any{"value": "x"}},
		"DELETE /secrets/{secretID}":                          {status: notFound},
		"GET /sandboxes/metrics":                              {status: list, query: "?sandbox_ids=" + sb.SandboxID},
		"GET /teams":                                          {status: list},
		"GET /teams/{teamID}/metrics":                         {status: forbidden},
		"GET /teams/{teamID}/metrics/max":                     {status: forbidden, query: "?metric=concurrent_sandboxes"},
		"GET /api-keys":                                       {status: list},
		"POST /api-keys":                                      {status: forbidden, body: map[string]any{"name": "x"}},
		"PATCH /api-keys/{apiKeyID}":                          {status: forbidden, body: map[string]any{"name": "x"}},
		"DELETE /api-keys/{apiKeyID}":                         {status: forbidden},
		"GET /templates":                                      {status: list},
		"DELETE /templates/{id}":                              {status: notFound},
		"GET /templates/{templateID}/{item}":                  {status: notFound},
		"POST /templates/tags":                                {status: notFound, body: map[string]any{"target": "base", "tags": []string{"beta"}}},
		"DELETE /templates/tags":                              {status: notFound, body: map[string]any{"name": "base", "tags": []string{"beta"}}},
		"POST /v3/templates":                                  {status: forbidden, body: map[string]any{"name": "beta-tpl"}},
		"GET /templates/{templateID}/files/{hash}":            {status: forbidden},
		"POST /v2/templates/{templateID}/builds/{buildID}":    {status: forbidden, body: map[string]any{}},
		"GET /templates/{templateID}/builds/{buildID}/status": {status: forbidden},
		"GET /nodes":                                          {status: forbidden},
		"GET /nodes/{nodeID}":                                 {status: forbidden},
		"DELETE /nodes/{nodeID}":                              {status: forbidden},
		"POST /nodes/{nodeID}":                                {status: forbidden, body: map[string]any{"status": "draining"}},
		"POST /nodes/{nodeID}/drain":                          {status: forbidden},
		"GET /sbx/v1/teams":                                   {status: forbidden},
		"POST /sbx/v1/teams":                                  {status: forbidden, body: map[string]any{"name": "gamma"}},
		"GET /sbx/v1/teams/{teamID}":                          {status: forbidden},
		"PATCH /sbx/v1/teams/{teamID}":                        {status: forbidden, body: map[string]any{"maxSandboxes": 1}},
		"DELETE /sbx/v1/teams/{teamID}":                       {status: forbidden},
		"GET /sbx/v1/keys":                                    {status: forbidden},
		"POST /sbx/v1/keys":                                   {status: forbidden, body: map[string]any{"team": "alpha"}},
		"DELETE /sbx/v1/keys/{id}":                            {status: forbidden},
		"POST /sbx/v1/templates/import":                       {status: forbidden, body: map[string]any{}},
		"GET /sbx/v1/templates/{name}":                        {status: notFound},
		"PATCH /sbx/v1/templates/{name}":                      {status: forbidden, body: map[string]any{}},
		"POST /sbx/v1/templates/builds":                       {status: forbidden, query: "?name=beta-tpl"},
		"GET /sbx/v1/templates/builds/{buildID}":              {status: forbidden},
		"GET /sbx/v1/templates/builds/{buildID}/logs":         {status: forbidden},
		"POST /sbx/v1/templates/builtin/{name}":               {status: forbidden},
		"PUT /sbx/v1/uploads/{buildID}/{hash}":                {status: http.StatusUnauthorized},
		"GET /events/sandboxes":                               {status: list},
		"GET /events/sandboxes/{sandboxID}":                   {status: notFound},
		"POST /events/webhooks":                               {status: http.StatusBadRequest, body: map[string]any{}},
		"GET /events/webhooks":                                {status: list},
		"GET /events/webhooks/{webhookID}":                    {status: notFound},
		"PATCH /events/webhooks/{webhookID}":                  {status: notFound, body: map[string]any{"enabled": false}},
		"DELETE /events/webhooks/{webhookID}":                 {status: notFound},
		"GET /events/webhooks/{webhookID}/deliveries":         {status: notFound},
		"GET /sbx/v1/audit":                                   {status: forbidden},
		"GET /sbx/v1/usage":                                   {status: forbidden, query: "?team=" + teamID["alpha"]},
		"GET /dashboard/":                                     {status: notFound},
		"POST /dashboard/api/session":                         {status: http.StatusUnauthorized, body: map[string]any{}},
		"GET /dashboard/api/session":                          {status: http.StatusUnauthorized},
		"DELETE /dashboard/api/session":                       {status: http.StatusUnauthorized},
		"GET /dashboard/api/sandboxes/stream":                 {status: list},
		"GET /dashboard/api/sandboxes/{id}/processes":         {status: notFound},
		"GET /dashboard/api/sandboxes/{id}/terminal":          {status: notFound},
		"GET /dashboard/api/sandboxes/{id}/files":             {status: notFound, query: "?path=/"},
		"DELETE /dashboard/api/sandboxes/{id}/files":          {status: notFound, query: "?path=/tmp"},
		"GET /dashboard/api/sandboxes/{id}/files/content":     {status: notFound, query: "?path=/etc/hostname"},
		"PUT /dashboard/api/sandboxes/{id}/files/content":     {status: notFound, query: "?path=/tmp/x"},
		"POST /dashboard/api/sandboxes/{id}/files/dir":        {status: notFound, query: "?path=/tmp/d"},
	}
	// Path values: alpha's objects, or what names one.
	values := map[string]string{
		"{id}": sb.SandboxID, "{sandboxID}": sb.SandboxID, "{volumeID}": vol.VolumeID, "{secretID}": sec.SecretID, "{webhookID}": hook.ID,
		"{teamID}": teamID["alpha"], "{item}": "tags", "{name}": snap.SnapshotID,
		"{templateID}": snap.SnapshotID, "{buildID}": snap.SnapshotID, "{hash}": strings.Repeat("a", 64),
		"{nodeID}": "vm", "{apiKeyID}": alphaKeys[0].ID,
	}
	// Paths whose {id} is another kind of object.
	overrides := map[string]string{
		"DELETE /templates/{id}":   "/templates/" + snap.SnapshotID,
		"DELETE /sbx/v1/keys/{id}": "/sbx/v1/keys/key_0000000000000000",
		// A file of the dashboard's build named by alpha's sandbox.
		"GET /dashboard/": "/dashboard/assets/" + sb.SandboxID + ".js",
	}
	b := key["beta"]
	seen := map[string]bool{}
	for _, route := range apiRoutes(t) {
		if route == "/" {
			continue
		}
		seen[route] = true
		c, ok := cases[route]
		if !ok {
			t.Errorf("route %q has no case in TestTeamIsolation: say what a key of another team gets there", route)
			continue
		}
		method, path, _ := strings.Cut(route, " ")
		if p, ok := overrides[route]; ok {
			path = p
		}
		for k, v := range values {
			path = strings.ReplaceAll(path, k, v)
		}
		var body []byte
		if c.body != nil {
			body, _ = json.Marshal(c.body)
		}
		// The volume-content routes take a volume's token: beta's API key
		// is not alpha's volume's.
		code, got := func() (int, []byte) {
			if route == "GET /dashboard/api/sandboxes/stream" {
				// A stream never ends: its first event is the list.
				return dashFirstEvent(t, ctx, u+path, b)
			}
			if strings.HasPrefix(route, method+" /volumecontent/") {
				req, _ := http.NewRequestWithContext(ctx, method, u+path+c.query, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+b)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				out, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, out
			}
			return teamSend(t, ctx, method, u+path+c.query, b, body)
		}()
		switch {
		case c.status == list && code/100 != 2:
			t.Errorf("%s %s with beta's key = %d %s; want 2xx", method, path, code, got)
		case c.status != list && code != c.status:
			t.Errorf("%s %s with beta's key = %d %s; want %d", method, path, code, got, c.status)
		}
		for _, id := range alphaIDs {
			// Errors may echo the path; answers must not hold alpha's ids.
			if code/100 == 2 && bytes.Contains(got, []byte(id)) {
				t.Errorf("%s %s with beta's key shows alpha's %q: %s", method, path, id, got)
			}
		}
		if code == notFound {
			var e wire.Error
			if err := json.Unmarshal(got, &e); err != nil || e.Code != notFound || !strings.Contains(e.Message, "not found") {
				t.Errorf("%s %s: 404 body %s is not the not-found error of an unknown id", method, path, got)
			}
		}
	}
	for route := range cases {
		if !seen[route] {
			t.Errorf("case %q names no route of internal/api", route)
		}
	}

	// Beta's admin key manages beta's keys, not alpha's.
	var betaAdmin wire.Key
	must(t, ctx, "POST", u+"/sbx/v1/keys", srv.APIKey, map[string]any{"team": "beta", "role": "admin"}, 201, &betaAdmin)
	must(t, ctx, "PATCH", u+"/api-keys/"+alphaKeys[0].ID, betaAdmin.Key, map[string]any{"name": "x"}, 404, nil)
	must(t, ctx, "DELETE", u+"/api-keys/"+alphaKeys[0].ID, betaAdmin.Key, nil, 404, nil)
	must(t, ctx, "DELETE", u+"/api-keys/"+betaAdmin.ID, betaAdmin.Key, nil, 204, nil)

	// A snapshot is no template alias of another team's.
	must(t, ctx, "GET", u+"/templates/aliases/"+snap.SnapshotID, b, nil, 404, nil)

	// Alpha's objects are untouched, and alpha sees them.
	var detail wire.SandboxDetail
	must(t, ctx, "GET", u+"/sandboxes/"+sb.SandboxID, a, nil, 200, &detail)
	if detail.State != "running" {
		t.Errorf("alpha's sandbox is %s after beta's calls; want running", detail.State)
	}
	must(t, ctx, "GET", u+"/volumes/"+vol.VolumeID, a, nil, 200, nil)
	must(t, ctx, "GET", u+"/events/webhooks/"+hook.ID, a, nil, 200, nil)
	var snaps []wire.Snapshot
	must(t, ctx, "GET", u+"/snapshots", a, nil, 200, &snaps)
	if len(snaps) != 1 || snaps[0].SnapshotID != snap.SnapshotID {
		t.Errorf("alpha's snapshots = %+v; want its one", snaps)
	}
	var listed []wire.ListedSandbox
	must(t, ctx, "GET", u+"/v2/sandboxes", a, nil, 200, &listed)
	if len(listed) != 1 || listed[0].SandboxID != sb.SandboxID {
		t.Errorf("alpha's sandboxes = %+v; want its one", listed)
	}
	var myTeams []wire.Team
	must(t, ctx, "GET", u+"/teams", a, nil, 200, &myTeams)
	if len(myTeams) != 1 || myTeams[0].TeamID != teamID["alpha"] || myTeams[0].Name != "alpha" || myTeams[0].IsDefault {
		t.Errorf("GET /teams with alpha's key = %+v; want alpha alone", myTeams)
	}
	// A fork is alpha's too; the default team's admin key sees none of it.
	var forks []wire.ForkResult
	must(t, ctx, "POST", u+"/sandboxes/"+sb.SandboxID+"/fork", a, map[string]any{}, 201, &forks)
	if len(forks) != 1 || forks[0].Sandbox == nil {
		t.Fatalf("fork = %+v", forks)
	}
	must(t, ctx, "GET", u+"/sandboxes/"+forks[0].Sandbox.SandboxID, b, nil, 404, nil)
	must(t, ctx, "GET", u+"/sandboxes/"+forks[0].Sandbox.SandboxID, srv.APIKey, nil, 404, nil)
	must(t, ctx, "GET", u+"/sandboxes/"+forks[0].Sandbox.SandboxID, a, nil, 200, nil)
	var evs []wire.SandboxEvent
	must(t, ctx, "GET", u+"/events/sandboxes/"+sb.SandboxID, a, nil, 200, &evs)
	if len(evs) == 0 || evs[0].SandboxTeamID != teamID["alpha"] {
		t.Errorf("alpha's sandbox events = %+v; want some, of team %s", evs, teamID["alpha"])
	}

	for _, id := range []string{sb.SandboxID, forks[0].Sandbox.SandboxID} {
		must(t, ctx, "DELETE", u+"/sandboxes/"+id, a, nil, 204, nil)
	}
	// Volumes stay mounted past the server: destroy them, each by its
	// team.
	var betaVols []wire.Volume
	must(t, ctx, "GET", u+"/volumes", b, nil, 200, &betaVols)
	if len(betaVols) != 1 || betaVols[0].Name != "beta-vol" {
		t.Errorf("beta's volumes = %+v; want its one", betaVols)
	}
	for _, v := range betaVols {
		must(t, ctx, "DELETE", u+"/volumes/"+v.VolumeID, b, nil, 204, nil)
	}
	must(t, ctx, "DELETE", u+"/volumes/"+vol.VolumeID, a, nil, 204, nil)

	// A team with keys or sandboxes stays; a revoked key is refused at
	// once.
	if _, stderr, code := srv.CLI(ctx, nil, "team", "rm", "alpha"); code == 0 || !strings.Contains(stderr, "still has") {
		t.Errorf("sbx team rm alpha (which has keys) = %d %s; want refused", code, stderr)
	}
	var keys []wire.Key
	must(t, ctx, "GET", u+"/sbx/v1/keys", srv.APIKey, nil, 200, &keys)
	for _, k := range keys {
		if k.Name == "beta" {
			if k.Team != teamID["beta"] || k.Admin {
				t.Errorf("beta's key = %+v; want a member of team beta", k)
			}
			must(t, ctx, "DELETE", u+"/sbx/v1/keys/"+k.ID, srv.APIKey, nil, 204, nil)
		}
	}
	must(t, ctx, "GET", u+"/v2/sandboxes", b, nil, 401, nil)
}

// TestTeamQuota: 50 creates racing against a team's limit of 5 concurrent
// sandboxes start exactly 5, the others get 429 naming the limit; a
// resume and a fork past it are refused as well, and so is a create past
// the team's memory limit.
func TestTeamQuota(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	srv := harness.Start(t, "--internet=false")
	u := srv.URL
	var team wire.TeamInfo
	must(t, ctx, "POST", u+"/sbx/v1/teams", srv.APIKey, map[string]any{"name": "q", "maxSandboxes": 5}, 201, &team)
	var k wire.Key
	must(t, ctx, "POST", u+"/sbx/v1/keys", srv.APIKey, map[string]any{"team": "q"}, 201, &k)

	type result struct {
		code int
		body []byte
	}
	results := make(chan result, 50)
	start := make(chan struct{})
	body, _ := json.Marshal(map[string]any{"templateID": "base", "timeout": 300})
	for range 50 {
		go func() {
			<-start
			code, got := teamSend(t, ctx, "POST", u+"/sandboxes", k.Key, body)
			results <- result{code, got}
		}()
	}
	close(start)
	var made []string
	refused := 0
	for range 50 {
		r := <-results
		switch r.code {
		case http.StatusCreated:
			var sb wire.Sandbox
			if err := json.Unmarshal(r.body, &sb); err != nil {
				t.Fatal(err)
			}
			made = append(made, sb.SandboxID)
		case http.StatusTooManyRequests:
			var e wire.Error
			if err := json.Unmarshal(r.body, &e); err != nil || e.Code != 429 || !strings.Contains(e.Message, "limit of 5 concurrent sandboxes (max-sandboxes)") {
				t.Errorf("429 body %s: want the E2B error naming the limit", r.body)
			}
			refused++
		default:
			t.Errorf("racing create = %d %s; want 201 or 429", r.code, r.body)
		}
	}
	if len(made) != 5 || refused != 45 {
		t.Fatalf("50 racing creates against a limit of 5: %d started, %d refused; want 5 and 45", len(made), refused)
	}
	// The default team has no limit, and its sandboxes do not count.
	var other wire.Sandbox
	must(t, ctx, "POST", u+"/sandboxes", srv.APIKey, map[string]any{"templateID": "base"}, 201, &other)

	// A paused sandbox does not count; resuming it past the limit is
	// refused, as is a fork.
	must(t, ctx, "POST", u+"/sandboxes/"+made[0]+"/pause", k.Key, nil, 204, nil)
	var sixth wire.Sandbox
	must(t, ctx, "POST", u+"/sandboxes", k.Key, map[string]any{"templateID": "base"}, 201, &sixth)
	must(t, ctx, "POST", u+"/sandboxes/"+made[0]+"/resume", k.Key, map[string]any{}, 429, nil)
	must(t, ctx, "POST", u+"/sandboxes/"+made[0]+"/connect", k.Key, map[string]any{}, 429, nil)
	var forks []wire.ForkResult
	must(t, ctx, "POST", u+"/sandboxes/"+sixth.SandboxID+"/fork", k.Key, map[string]any{}, 201, &forks)
	if len(forks) != 1 || forks[0].Error == nil || forks[0].Error.Code != 429 {
		t.Errorf("fork past the limit = %+v; want its copy refused with 429", forks)
	}
	var detail wire.SandboxDetail
	must(t, ctx, "GET", u+"/sandboxes/"+made[0], k.Key, nil, 200, &detail)
	if detail.State != "paused" {
		t.Errorf("the sandbox whose resume was refused is %s; want paused", detail.State)
	}

	// Memory: the limit is what the five running ones have.
	must(t, ctx, "GET", u+"/sandboxes/"+sixth.SandboxID, k.Key, nil, 200, &detail)
	if _, stderr, code := srv.CLI(ctx, nil, "team", "set", "q", "--max-sandboxes", "0", "--max-memory-mb", strconv.FormatInt(5*detail.MemoryMB, 10)); code != 0 {
		t.Fatalf("sbx team set: %d %s", code, stderr)
	}
	code, got := teamSend(t, ctx, "POST", u+"/sandboxes", k.Key, body)
	if code != 429 || !strings.Contains(string(got), "(max-memory-mb)") {
		t.Errorf("create past the memory limit = %d %s; want 429 naming max-memory-mb", code, got)
	}
	must(t, ctx, "DELETE", u+"/sandboxes/"+made[1], k.Key, nil, 204, nil)
	must(t, ctx, "POST", u+"/sandboxes/"+made[0]+"/resume", k.Key, map[string]any{}, 201, nil)

	for _, id := range append(made[2:], made[0], sixth.SandboxID) {
		must(t, ctx, "DELETE", u+"/sandboxes/"+id, k.Key, nil, 204, nil)
	}
	must(t, ctx, "DELETE", u+"/sandboxes/"+other.SandboxID, srv.APIKey, nil, 204, nil)
}

// dashFirstEvent returns the status of the dashboard's sandbox stream at
// url with key and its first event's data.
func dashFirstEvent(t *testing.T, ctx context.Context, url, key string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	st := &sseReader{br: bufio.NewReader(resp.Body)}
	ev, data, err := st.next()
	if err != nil || ev != "snapshot" {
		t.Fatalf("GET %s: first event %q %s %v; want a snapshot", url, ev, data, err)
	}
	return resp.StatusCode, data
}

// TestTeamQuotaTwoNodes: 50 creates racing against a team's limit of 5,
// sent half to each of two nodes sharing one Postgres store, start exactly
// 5 between them; the quota counts both nodes' sandboxes.
func TestTeamQuotaTwoNodes(t *testing.T) {
	dsn, nodes := startFleet(t, 2)
	ctx := ctxFor(t, 4*time.Minute)
	var team wire.TeamInfo
	must(t, ctx, "POST", nodes[0].URL+"/sbx/v1/teams", nodes[0].APIKey, map[string]any{"name": "q2", "maxSandboxes": 5}, 201, &team)
	var k wire.Key
	must(t, ctx, "POST", nodes[0].URL+"/sbx/v1/keys", nodes[0].APIKey, map[string]any{"team": "q2"}, 201, &k)
	// The second node reads keys from the store every 2 s.
	for deadline := time.Now().Add(30 * time.Second); ; {
		code, _ := teamSend(t, ctx, "GET", nodes[1].URL+"/v2/sandboxes", k.Key, nil)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second node refuses the new key: %d", code)
		}
		time.Sleep(200 * time.Millisecond)
	}

	type result struct {
		code int
		body []byte
	}
	results := make(chan result, 50)
	start := make(chan struct{})
	body, _ := json.Marshal(map[string]any{"templateID": "base", "timeout": 300})
	for i := range 50 {
		go func() {
			<-start
			code, got := teamSend(t, ctx, "POST", nodes[i%2].URL+"/sandboxes", k.Key, body)
			results <- result{code, got}
		}()
	}
	close(start)
	var made []string
	for range 50 {
		r := <-results
		switch r.code {
		case http.StatusCreated:
			var sb wire.Sandbox
			if err := json.Unmarshal(r.body, &sb); err != nil {
				t.Fatal(err)
			}
			made = append(made, sb.SandboxID)
		case http.StatusTooManyRequests:
			if !strings.Contains(string(r.body), "limit of 5 concurrent sandboxes (max-sandboxes)") {
				t.Errorf("429 body %s: want the limit named", r.body)
			}
		default:
			t.Errorf("racing create = %d %s; want 201 or 429", r.code, r.body)
		}
	}
	if len(made) != 5 {
		t.Errorf("50 racing creates on two nodes against a limit of 5 started %d", len(made))
	}
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u, err := db.TeamUsage(ctx, team.ID, "")
	if err != nil || u.Active != int64(len(made)) {
		t.Errorf("the store holds %+v, %v for the team; want %d active", u, err, len(made))
	}
	for _, id := range made {
		must(t, ctx, "DELETE", nodes[0].URL+"/sandboxes/"+id, k.Key, nil, 204, nil)
	}
}

// TestTeamSnapshotQuotaTwoNodes: snapshots racing against a team's limit
// of 3 templates (max-templates), sent to two nodes sharing one Postgres
// store, four sandboxes at once, make exactly 3 between them: the count
// and the insert are one step under the team's lock in the store, not a
// check on each node.
func TestTeamSnapshotQuotaTwoNodes(t *testing.T) {
	dsn, nodes := startFleet(t, 2)
	ctx := ctxFor(t, 4*time.Minute)
	var team wire.TeamInfo
	must(t, ctx, "POST", nodes[0].URL+"/sbx/v1/teams", nodes[0].APIKey, map[string]any{"name": "s2", "maxTemplates": 3}, 201, &team)
	var k wire.Key
	must(t, ctx, "POST", nodes[0].URL+"/sbx/v1/keys", nodes[0].APIKey, map[string]any{"team": "s2"}, 201, &k)
	// The second node reads keys from the store every 2 s.
	for deadline := time.Now().Add(30 * time.Second); ; {
		code, _ := teamSend(t, ctx, "GET", nodes[1].URL+"/v2/sandboxes", k.Key, nil)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second node refuses the new key: %d", code)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Four sandboxes, made through both nodes; snapshots of one sandbox
	// are serialised by its own lock, so the race is between sandboxes.
	var ids []string
	for i := range 4 {
		var sb wire.Sandbox
		must(t, ctx, "POST", nodes[i%2].URL+"/sandboxes", k.Key, map[string]any{"templateID": "base", "timeout": 300}, 201, &sb)
		ids = append(ids, sb.SandboxID)
	}
	type result struct {
		code int
		body []byte
	}
	results := make(chan result, 12)
	start := make(chan struct{})
	for i := range 12 {
		go func() {
			<-start
			code, got := teamSend(t, ctx, "POST", nodes[i%2].URL+"/sandboxes/"+ids[i%4]+"/snapshots", k.Key, []byte(`{}`))
			results <- result{code, got}
		}()
	}
	close(start)
	made := 0
	for range 12 {
		r := <-results
		switch r.code {
		case http.StatusCreated:
			made++
		case http.StatusTooManyRequests:
			if !strings.Contains(string(r.body), "limit of 3 templates and snapshots (max-templates)") {
				t.Errorf("429 body %s: want the limit named", r.body)
			}
		default:
			t.Errorf("racing snapshot = %d %s; want 201 or 429", r.code, r.body)
		}
	}
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n, err := db.TeamSnapshots(ctx, team.ID)
	if made != 3 || err != nil || n != 3 {
		t.Errorf("12 racing snapshots on two nodes against a limit of 3: %d made, %d stored (%v); want 3 and 3", made, n, err)
	}
	for i, id := range ids {
		must(t, ctx, "DELETE", nodes[i%2].URL+"/sandboxes/"+id, k.Key, nil, 204, nil)
	}
}

// TestTeamLimits drives the limits beyond concurrency through the API as
// an operator sets them with the CLI: the longest timeout (400, as E2B),
// disk, paused sandboxes kept, snapshots and volume bytes (429 naming
// each).
func TestTeamLimits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	srv := harness.Start(t, "--internet=false")
	u := srv.URL
	if _, stderr, code := srv.CLI(ctx, nil, "team", "create", "lim", "--max-timeout", "10m", "--max-paused", "1", "--max-templates", "1", "--max-volume-mb", "1024"); code != 0 {
		t.Fatalf("sbx team create: %d %s", code, stderr)
	}
	var k wire.Key
	must(t, ctx, "POST", u+"/sbx/v1/keys", srv.APIKey, map[string]any{"team": "lim"}, 201, &k)
	wantCode := func(what string, code int, body []byte, want int, msg string) {
		t.Helper()
		var e wire.Error
		if code != want || json.Unmarshal(body, &e) != nil || e.Code != want || !strings.Contains(e.Message, msg) {
			t.Errorf("%s = %d %s; want %d naming %s", what, code, body, want, msg)
		}
	}
	send := func(method, path string, body any) (int, []byte) {
		b, _ := json.Marshal(body)
		if body == nil {
			b = nil
		}
		return teamSend(t, ctx, method, u+path, k.Key, b)
	}

	code, got := send("POST", "/sandboxes", map[string]any{"templateID": "base", "timeout": 3600})
	wantCode("create past max-timeout", code, got, 400, "(max-timeout)")
	var a, b wire.Sandbox
	must(t, ctx, "POST", u+"/sandboxes", k.Key, map[string]any{"templateID": "base", "timeout": 300}, 201, &a)
	must(t, ctx, "POST", u+"/sandboxes", k.Key, map[string]any{"templateID": "base"}, 201, &b)
	code, got = send("POST", "/sandboxes/"+a.SandboxID+"/timeout", map[string]any{"timeout": 3600})
	wantCode("setTimeout past max-timeout", code, got, 400, "(max-timeout)")
	must(t, ctx, "POST", u+"/sandboxes/"+a.SandboxID+"/timeout", k.Key, map[string]any{"timeout": 600}, 204, nil)

	// One paused sandbox is kept; a second pause is refused and leaves it
	// running.
	must(t, ctx, "POST", u+"/sandboxes/"+a.SandboxID+"/pause", k.Key, nil, 204, nil)
	code, got = send("POST", "/sandboxes/"+b.SandboxID+"/pause", nil)
	wantCode("pause past max-paused", code, got, 429, "(max-paused)")
	var detail wire.SandboxDetail
	must(t, ctx, "GET", u+"/sandboxes/"+b.SandboxID, k.Key, nil, 200, &detail)
	if detail.State != "running" {
		t.Errorf("the sandbox whose pause was refused is %s; want running", detail.State)
	}

	// Snapshots: one, then the limit.
	must(t, ctx, "POST", u+"/sandboxes/"+b.SandboxID+"/snapshots", k.Key, map[string]any{}, 201, nil)
	code, got = send("POST", "/sandboxes/"+b.SandboxID+"/snapshots", map[string]any{})
	wantCode("snapshot past max-templates", code, got, 429, "(max-templates)")

	// Volumes: 1024 MiB in all.
	var vol wire.VolumeAndToken
	must(t, ctx, "POST", u+"/volumes", k.Key, map[string]any{"name": "lim-a", "sizeMB": 1000}, 201, &vol)
	code, got = send("POST", "/volumes", map[string]any{"name": "lim-b", "sizeMB": 100})
	wantCode("volume past max-volume-mb", code, got, 429, "(max-volume-mb)")
	must(t, ctx, "DELETE", u+"/volumes/"+vol.VolumeID, k.Key, nil, 204, nil)

	// Disk: the two sandboxes' disks are what the team may hold.
	if detail.DiskSizeMB == 0 {
		t.Fatal("the server gives sandboxes no disk of their own: max-disk-mb has nothing to bound")
	}
	if _, stderr, code := srv.CLI(ctx, nil, "team", "set", "lim", "--max-disk-mb", strconv.FormatInt(2*detail.DiskSizeMB, 10)); code != 0 {
		t.Fatalf("sbx team set: %d %s", code, stderr)
	}
	code, got = send("POST", "/sandboxes", map[string]any{"templateID": "base", "timeout": 300})
	wantCode("create past max-disk-mb", code, got, 429, "(max-disk-mb)")

	for _, id := range []string{a.SandboxID, b.SandboxID} {
		must(t, ctx, "DELETE", u+"/sandboxes/"+id, k.Key, nil, 204, nil)
	}
}

// TestDeleteTeamWithVolumes: a team that still owns a volume (or a
// webhook, or a key) is not removed, by the API (409 in the E2B error
// shape, naming what is left) nor by `sbx team rm`; once they are gone, it
// is, and its name is free again.
func TestDeleteTeamWithVolumes(t *testing.T) {
	// The webhook below points at a closed loopback port: it is made,
	// never delivered to (no sandbox runs).
	srv := harness.Start(t, "--internet=false", "--webhook-allow", "127.0.0.1/32")
	ctx := ctxFor(t, 2*time.Minute)
	u := srv.URL
	var team wire.TeamInfo
	must(t, ctx, "POST", u+"/sbx/v1/teams", srv.APIKey, map[string]any{"name": "dv"}, 201, &team)
	var k wire.Key
	must(t, ctx, "POST", u+"/sbx/v1/keys", srv.APIKey, map[string]any{"team": "dv", "name": "dv-key"}, 201, &k)
	var vol wire.VolumeAndToken
	must(t, ctx, "POST", u+"/volumes", k.Key, map[string]any{"name": "dv-vol", "sizeMB": 16}, 201, &vol)

	refused := func(want string) {
		t.Helper()
		code, body := teamSend(t, ctx, "DELETE", u+"/sbx/v1/teams/"+team.ID, srv.APIKey, nil)
		var e wire.Error
		if code != http.StatusConflict || json.Unmarshal(body, &e) != nil || e.Code != http.StatusConflict || !strings.Contains(e.Message, want) {
			t.Errorf("DELETE a team with %s = %d %s; want 409 naming %q", want, code, body, want)
		}
	}
	refused(`team "dv" still has 1 API key, 1 volume; remove them first`)
	if _, stderr, code := srv.CLI(ctx, nil, "team", "rm", "dv"); code == 0 || !strings.Contains(stderr, "1 volume") {
		t.Errorf("sbx team rm of a team with a volume = %d %s; want refused naming the volume", code, stderr)
	}
	hook, err := client.New(u, k.Key).CreateWebhook(ctx, client.NewWebhook{Name: "dv-hook", URL: "http://127.0.0.1:9/", Events: []string{"sandbox.lifecycle.created"}, SignatureSecret: "dv-secret"})
	if err != nil {
		t.Fatal(err)
	}
	must(t, ctx, "DELETE", u+"/volumes/"+vol.VolumeID, k.Key, nil, 204, nil)
	refused(`team "dv" still has 1 API key, 1 webhook; remove them first`)
	must(t, ctx, "DELETE", u+"/events/webhooks/"+hook.ID, k.Key, nil, 204, nil)
	must(t, ctx, "DELETE", u+"/sbx/v1/keys/"+k.ID, srv.APIKey, nil, 204, nil)
	must(t, ctx, "DELETE", u+"/sbx/v1/teams/"+team.ID, srv.APIKey, nil, 204, nil)
	must(t, ctx, "GET", u+"/sbx/v1/teams/"+team.ID, srv.APIKey, nil, 404, nil)
	must(t, ctx, "POST", u+"/sbx/v1/teams", srv.APIKey, map[string]any{"name": "dv"}, 201, nil)
}
