package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
	"github.com/sbxdev/sbx/wire"
)

// delivery is one request a test webhook receiver got.
type delivery struct {
	body      []byte
	signature string
	id        string // e2b-delivery-id
	answered  int
	event     client.SandboxEvent
}

// receiver is a webhook receiver on loopback. It answers 500 until accept
// is set, then 200, and hands every request it gets to the test.
type receiver struct {
	srv    *httptest.Server
	accept atomic.Bool
	got    chan delivery
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{got: make(chan delivery, 256)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		d := delivery{body: body, signature: req.Header.Get("e2b-signature"), id: req.Header.Get("e2b-delivery-id"), answered: http.StatusInternalServerError}
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
			d.answered = http.StatusBadRequest
		} else if r.accept.Load() {
			d.answered = http.StatusOK
		}
		json.Unmarshal(body, &d.event)
		w.WriteHeader(d.answered)
		r.got <- d
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// verify checks a delivery's signature as a receiver would: the unpadded
// base64 SHA-256 of the secret followed by the raw body.
func verify(secret string, d delivery) bool {
	sum := sha256.Sum256(append([]byte(secret), d.body...))
	return d.signature == strings.TrimRight(base64.StdEncoding.EncodeToString(sum[:]), "=")
}

// next returns the receiver's next request, failing the test when none
// comes before ctx ends.
func (r *receiver) next(t *testing.T, ctx context.Context) delivery {
	t.Helper()
	select {
	case d := <-r.got:
		return d
	case <-ctx.Done():
		t.Fatal("the webhook receiver got no request in time")
		return delivery{}
	}
}

// TestWebhookAcrossCrash is the done-when: a receiver on loopback,
// allowed by --webhook-allow, gets the signed created and killed events of
// a sandbox although the server was SIGKILLed between them while the
// created event was still undelivered (the receiver refused it with 500).
func TestWebhookAcrossCrash(t *testing.T) {
	srv := harness.Start(t, "--webhook-allow", "127.0.0.1/32")
	ctx := ctxFor(t, 4*time.Minute)
	rcv := newReceiver(t)
	const secret = "crash-secret"
	hook, err := srv.Client.CreateWebhook(ctx, client.NewWebhook{
		Name: "crash", URL: rcv.srv.URL + "/hook", Events: []string{"sandbox.lifecycle.created", "sandbox.lifecycle.killed"}, SignatureSecret: secret,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !hook.Enabled || hook.ID == "" || len(hook.Events) != 2 {
		t.Fatalf("webhook %+v", hook)
	}
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := rcv.next(t, ctx)
	if first.answered != http.StatusInternalServerError || first.event.Type != "sandbox.lifecycle.created" || first.event.SandboxID != sb.ID {
		t.Fatalf("first delivery: answered %d, event %+v", first.answered, first.event)
	}
	if !verify(secret, first) || first.id != first.event.ID {
		t.Fatalf("first delivery: signature %q or id %q (body id %q) wrong", first.signature, first.id, first.event.ID)
	}
	// The created event is refused so far: it is pending in the outbox
	// when the server dies.
	srv.Crash()
	srv.StartAgain()
	rcv.accept.Store(true)
	if err := srv.Client.KillSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	accepted := map[string]delivery{} // by type
	ids := map[string]string{}        // event id by type
	for len(accepted) < 2 {
		d := rcv.next(t, ctx)
		if !verify(secret, d) {
			t.Fatalf("delivery of %s: signature %q does not verify", d.event.Type, d.signature)
		}
		if d.id != d.event.ID || d.event.SandboxID != sb.ID || d.event.Version != "v1" || d.event.SandboxTeamID == "" {
			t.Fatalf("delivery: header id %q, body %s", d.id, d.body)
		}
		if prev, ok := ids[d.event.Type]; ok && prev != d.event.ID {
			t.Fatalf("two %s events (%s, %s) for one sandbox", d.event.Type, prev, d.event.ID)
		}
		ids[d.event.Type] = d.event.ID
		if d.answered == http.StatusOK {
			if _, dup := accepted[d.event.Type]; dup {
				t.Logf("duplicate delivery of %s (same id %s)", d.event.Type, d.id)
			}
			accepted[d.event.Type] = d
		}
	}
	if ids["sandbox.lifecycle.created"] != first.event.ID {
		t.Errorf("the created event delivered after the crash has id %s, before it %s", ids["sandbox.lifecycle.created"], first.event.ID)
	}
	if c, k := accepted["sandbox.lifecycle.created"].event, accepted["sandbox.lifecycle.killed"].event; !c.Timestamp.Before(k.Timestamp) {
		t.Errorf("created at %v, killed at %v", c.Timestamp, k.Timestamp)
	}
	// The server records an attempt once it has read the answer: wait
	// for both to be recorded delivered.
	ds := awaitDeliveries(t, ctx, srv.Client, hook.ID, func(ds []client.WebhookDelivery) bool {
		return len(ds) == 2 && ds[0].DeliveredAt != nil && ds[1].DeliveredAt != nil
	})
	for _, d := range ds {
		if d.FailedAt != nil || d.NextAttemptAt != nil || d.Attempts < 1 {
			t.Errorf("delivery %+v: want delivered", d)
		}
	}
}

// awaitDeliveries polls webhook id's deliveries until done accepts them
// (the outbox's state has no event to wait on) and returns them.
func awaitDeliveries(t *testing.T, ctx context.Context, c *client.Client, id string, done func([]client.WebhookDelivery) bool) []client.WebhookDelivery {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ds, err := c.WebhookDeliveries(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if done(ds) {
			return ds
		}
		select {
		case <-ctx.Done():
			t.Fatalf("deliveries of webhook %s: %+v", id, ds)
		case <-tick.C:
		}
	}
}

// TestWebhookSSRF checks that, without --webhook-allow, webhooks may not
// point at loopback, metadata, private or sandbox addresses (400 at
// registration), and that a name resolving to loopback is refused when
// the delivery dials it.
func TestWebhookSSRF(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	sub := netip.MustParsePrefix(srv.Subnet)
	sandboxAddr := sub.Addr().Next().String()
	_, selfPort, _ := net.SplitHostPort(srv.Addr)
	for _, u := range []string{
		"http://127.0.0.1/", "http://127.0.0.1:8080/hook", "http://[::1]:9/", "http://169.254.169.254/latest/meta-data/",
		"http://[fd00:ec2::254]/", "http://" + sandboxAddr + ":8000/", "http://10.0.0.1/", "http://192.168.1.1/",
		"http://0.0.0.0:" + selfPort + "/", "http://[::ffff:127.0.0.1]/",
	} {
		_, err := srv.Client.CreateWebhook(ctx, client.NewWebhook{Name: "x", URL: u, Events: []string{"sandbox.lifecycle.created"}, SignatureSecret: "s"})
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 400 || !strings.Contains(ae.Message, "refused") {
			t.Errorf("register %s: %v, want 400 refused", u, err)
		}
	}
	// A name is resolved when the delivery dials: localhost is loopback.
	rcv := newReceiver(t)
	port := rcv.srv.URL[strings.LastIndex(rcv.srv.URL, ":"):]
	hook, err := srv.Client.CreateWebhook(ctx, client.NewWebhook{Name: "local", URL: "http://localhost" + port + "/", Events: []string{"sandbox.lifecycle.created"}, SignatureSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	// Nor can an update point an existing webhook at a refused address.
	if _, err := srv.Client.UpdateWebhook(ctx, hook.ID, client.WebhookUpdate{URL: ptrTo("http://127.0.0.1" + port + "/")}); err == nil {
		t.Error("update to a loopback URL accepted")
	}
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Client.KillSandbox(ctx, sb.ID)
	// The refusal is recorded on the delivery; wait for the first attempt.
	ds := awaitDeliveries(t, ctx, srv.Client, hook.ID, func(ds []client.WebhookDelivery) bool { return len(ds) == 1 && ds[0].Attempts > 0 })
	if !strings.Contains(ds[0].LastError, "refused") || ds[0].DeliveredAt != nil {
		t.Fatalf("delivery to localhost: %+v, want refused", ds[0])
	}
	select {
	case d := <-rcv.got:
		t.Fatalf("the receiver behind localhost got a request: %s", d.body)
	default:
	}
}

func ptrTo[T any](v T) *T { return &v }

// getStrict GETs path with the admin key and decodes the answer into
// package wire's type out with unknown fields refused, so that wire's
// golden files stay true to what the server sends.
func getStrict(t *testing.T, ctx context.Context, srv *harness.Server, path string, out any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", srv.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, raw)
	}
	decodeStrict(t, string(raw), out)
}

// TestEventsLifecycle checks the event list: a sandbox's created, updated,
// paused, resumed and killed events, in order with their times, filters,
// and the events of a killed sandbox still listed.
func TestEventsLifecycle(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	c := srv.Client
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetTimeout(ctx, sb.ID, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateNetwork(ctx, sb.ID, client.NetworkPolicy{DenyOut: []string{"192.0.2.1"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Pause(ctx, sb.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Resume(ctx, sb.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSnapshot(ctx, sb.ID, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.KillSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	evs, err := c.ListEvents(ctx, &client.EventListOptions{SandboxID: sb.ID, Ascending: true})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for i, ev := range evs {
		types = append(types, strings.TrimPrefix(ev.Type, "sandbox.lifecycle."))
		if ev.SandboxID != sb.ID || ev.ID == "" || ev.Version != "v1" || ev.SandboxTemplateID != "base" || ev.EventData == nil {
			t.Errorf("event %+v", ev)
		}
		if i > 0 && ev.Timestamp.Before(evs[i-1].Timestamp) {
			t.Errorf("event %d at %v, before the one before it (%v)", i, ev.Timestamp, evs[i-1].Timestamp)
		}
	}
	if got, want := strings.Join(types, ","), "created,updated,updated,paused,resumed,checkpointed,killed"; got != want {
		t.Fatalf("events %s, want %s", got, want)
	}
	if d := evs[2].EventData; !d.Network {
		t.Errorf("network update event data %+v", d)
	}
	if d := evs[3].EventData; d.Reason != "request" || d.State != "paused" || d.PauseKind == "" {
		t.Errorf("paused event data %+v", d)
	}
	if d := evs[1].EventData; d.EndAt == nil || d.EndAt.Before(time.Now().Add(5*time.Minute)) {
		t.Errorf("updated event data %+v, want the new end of life", d)
	}
	newest, err := c.ListEvents(ctx, &client.EventListOptions{Types: []string{"sandbox.lifecycle.killed"}, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(newest) != 1 || newest[0].ID != evs[6].ID {
		t.Errorf("newest killed event: %+v, want %s", newest, evs[6].ID)
	}
	page, err := c.ListEvents(ctx, &client.EventListOptions{SandboxID: sb.ID, Ascending: true, Limit: 2, Offset: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || page[0].ID != evs[1].ID || page[1].ID != evs[2].ID {
		t.Errorf("page 2 of 2: %d events", len(page))
	}
	var strict []wire.SandboxEvent
	getStrict(t, ctx, srv, "/events/sandboxes/"+sb.ID, &strict)
	if len(strict) != len(evs) {
		t.Errorf("%d events decoded strictly, want %d", len(strict), len(evs))
	}
	// Unknown sandboxes are 404.
	_, err = c.ListEvents(ctx, &client.EventListOptions{SandboxID: "nosuchsandbox00000000"})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != 404 {
		t.Errorf("events of an unknown sandbox: %v, want 404", err)
	}
}

// TestAuditLog checks that state-changing calls and authentication
// failures are recorded with who, what, which object and from where, that
// only admins read the log, and that sbx audit shows it.
func TestAuditLog(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 2*time.Minute)
	plain, err := srv.Client.CreateKey(ctx, "plain")
	if err != nil {
		t.Fatal(err)
	}
	pc := client.New(srv.URL, plain.Key)
	hook, err := pc.CreateWebhook(ctx, client.NewWebhook{Name: "a", URL: "https://hooks.example.com/x", Events: []string{"sandbox.lifecycle.killed"}, SignatureSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.DeleteWebhook(ctx, hook.ID); err != nil {
		t.Fatal(err)
	}
	bad := client.New(srv.URL, "e2b_"+strings.Repeat("0", 40))
	if _, err := bad.ListSandboxes(ctx, nil); err == nil {
		t.Fatal("a wrong key was accepted")
	}
	var ae *client.APIError
	if _, err := pc.ListAudit(ctx, nil); !errors.As(err, &ae) || ae.StatusCode != 403 {
		t.Fatalf("audit with a plain key: %v, want 403", err)
	}
	recs, err := srv.Client.ListAudit(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	find := func(route string, status int) *client.AuditRecord {
		for i := range recs {
			if recs[i].Route == route && recs[i].Status == status {
				return &recs[i]
			}
		}
		t.Errorf("no audit record of %s answered %d in %+v", route, status, recs)
		return nil
	}
	if r := find("POST /sbx/v1/keys", 201); r != nil && (r.ObjectID != plain.ID || !r.Admin || r.KeyName != "admin" || r.Remote != "127.0.0.1") {
		t.Errorf("key creation record %+v", r)
	}
	if r := find("POST /events/webhooks", 201); r != nil && (r.ObjectID != hook.ID || r.Admin || r.KeyID != plain.ID || r.KeyName != "plain") {
		t.Errorf("webhook creation record %+v", r)
	}
	if r := find("DELETE /events/webhooks/{webhookID}", 204); r != nil && r.ObjectID != hook.ID {
		t.Errorf("webhook deletion record %+v", r)
	}
	if r := find("GET /v2/sandboxes", 401); r != nil && r.KeyID != "" {
		t.Errorf("auth failure record %+v", r)
	}
	find("GET /sbx/v1/audit", 403)
	for _, r := range recs {
		if r.Route == "GET /v2/sandboxes" && r.Status == 200 || r.TeamID == "" || r.Time.IsZero() {
			t.Errorf("record %+v: reads are not audited; every record has a team and a time", r)
		}
	}
	byObject, err := srv.Client.ListAudit(ctx, &client.AuditOptions{ObjectID: hook.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(byObject) != 2 {
		t.Errorf("records of webhook %s: %d, want 2 (create, delete)", hook.ID, len(byObject))
	}
	out, errOut, code := srv.CLI(ctx, nil, "audit", "--key", plain.ID, "--json")
	if code != 0 {
		t.Fatalf("sbx audit: exit %d: %s", code, errOut)
	}
	var cli []client.AuditRecord
	if err := json.Unmarshal([]byte(out), &cli); err != nil || len(cli) != 3 {
		t.Fatalf("sbx audit --key --json: %v, %d records (want 3: webhook create, delete, audit 403): %s", err, len(cli), out)
	}
	out, _, code = srv.CLI(ctx, nil, "audit", "--since", "1h")
	if code != 0 || !strings.Contains(out, "DELETE /events/webhooks/{webhookID}") || !strings.Contains(out, "(plain)") {
		t.Fatalf("sbx audit: exit %d:\n%s", code, out)
	}
}

// TestWebhookBadInput sends wrong requests to every new route and checks
// each gets its 4xx in E2B's error shape.
func TestWebhookBadInput(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 2*time.Minute)
	hook, err := srv.Client.CreateWebhook(ctx, client.NewWebhook{Name: "ok", URL: "https://hooks.example.com/x", Events: []string{"sandbox.lifecycle.created"}, SignatureSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := srv.Client.CreateKey(ctx, "plain")
	if err != nil {
		t.Fatal(err)
	}
	wh := "/events/webhooks/" + hook.ID
	const unknown = "/events/webhooks/00000000-0000-0000-0000-000000000001"
	big := `{"name":"` + strings.Repeat("a", 2<<20) + `"}`
	cases := []struct {
		name, method, path, body string
		key                      string // "" admin, "none", "wrong", "plain"
		status                   int
		msg                      string
	}{
		{"unknown webhook get", "GET", unknown, "", "", 404, "not found"},
		{"unknown webhook patch", "PATCH", unknown, `{"enabled":false}`, "", 404, "not found"},
		{"unknown webhook delete", "DELETE", unknown, "", "", 404, "not found"},
		{"unknown webhook deliveries", "GET", unknown + "/deliveries", "", "", 404, "not found"},
		{"traversal webhook id", "GET", "/events/webhooks/..%2f..%2fetc", "", "", 404, ""},
		{"malformed JSON create", "POST", "/events/webhooks", `{"name":`, "", 400, "malformed JSON"},
		{"malformed JSON patch", "PATCH", wh, `{"name":`, "", 400, "malformed JSON"},
		{"empty body", "POST", "/events/webhooks", ``, "", 400, "empty"},
		{"oversized create", "POST", "/events/webhooks", big, "", 413, "too large"},
		{"oversized patch", "PATCH", wh, big, "", 413, "too large"},
		{"no secret", "POST", "/events/webhooks", `{"name":"a","url":"https://x.example.com/","events":["sandbox.lifecycle.created"]}`, "", 400, "signatureSecret"},
		{"no name", "POST", "/events/webhooks", `{"url":"https://x.example.com/","events":["sandbox.lifecycle.created"],"signatureSecret":"s"}`, "", 400, "name"},
		{"long name", "POST", "/events/webhooks", `{"name":"` + strings.Repeat("n", 200) + `","url":"https://x.example.com/","events":["sandbox.lifecycle.created"],"signatureSecret":"s"}`, "", 400, "name"},
		{"bad scheme", "POST", "/events/webhooks", `{"name":"a","url":"ftp://x.example.com/","events":["sandbox.lifecycle.created"],"signatureSecret":"s"}`, "", 400, "scheme"},
		{"no host", "POST", "/events/webhooks", `{"name":"a","url":"http:///x","events":["sandbox.lifecycle.created"],"signatureSecret":"s"}`, "", 400, "host"},
		{"unknown event", "POST", "/events/webhooks", `{"name":"a","url":"https://x.example.com/","events":["sandbox.lifecycle.exploded"],"signatureSecret":"s"}`, "", 400, "unknown event"},
		{"no events", "POST", "/events/webhooks", `{"name":"a","url":"https://x.example.com/","events":[],"signatureSecret":"s"}`, "", 400, "events"},
		{"wrong type", "POST", "/events/webhooks", `{"name":"a","url":"https://x.example.com/","events":"all","signatureSecret":"s"}`, "", 400, "events"},
		{"patch to empty secret", "PATCH", wh, `{"signatureSecret":""}`, "", 400, "signatureSecret"},
		{"patch to unknown event", "PATCH", wh, `{"events":["x"]}`, "", 400, "unknown event"},
		{"bad event type filter", "GET", "/events/sandboxes?type=nope", "", "", 400, "unknown event type"},
		{"bad limit", "GET", "/events/sandboxes?limit=-1", "", "", 400, "-1"},
		{"zero limit", "GET", "/events/sandboxes?limit=0", "", "", 400, "limit"},
		{"bad orderAsc", "GET", "/events/sandboxes?orderAsc=maybe", "", "", 400, "orderAsc"},
		{"unknown sandbox events", "GET", "/events/sandboxes/nosuchsandbox00000000", "", "", 404, "not found"},
		{"no key events", "GET", "/events/sandboxes", "", "none", 401, "API key"},
		{"wrong key webhooks", "GET", "/events/webhooks", "", "wrong", 401, "invalid API key"},
		{"wrong key create", "POST", "/events/webhooks", `{}`, "wrong", 401, "invalid API key"},
		{"plain key audit", "GET", "/sbx/v1/audit", "", "plain", 403, "admin"},
		{"bad audit since", "GET", "/sbx/v1/audit?since=yesterday", "", "", 400, "since"},
		{"bad audit limit", "GET", "/sbx/v1/audit?limit=5000", "", "", 400, "limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			switch tc.key {
			case "":
				req.Header.Set("X-API-Key", srv.APIKey)
			case "plain":
				req.Header.Set("X-API-Key", plain.Key)
			case "wrong":
				req.Header.Set("X-API-Key", "e2b_"+strings.Repeat("1", 40))
			}
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, body)
			}
			var eb struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(body, &eb); err != nil || eb.Code != tc.status || eb.Message == "" || !strings.Contains(eb.Message, tc.msg) {
				t.Fatalf("error body %s, want code %d and a message containing %q", body, tc.status, tc.msg)
			}
		})
	}
	var hooks []wire.Webhook
	getStrict(t, ctx, srv, "/events/webhooks", &hooks)
	var one wire.Webhook
	getStrict(t, ctx, srv, "/events/webhooks/"+hook.ID, &one)
	var ds []wire.WebhookDelivery
	getStrict(t, ctx, srv, "/events/webhooks/"+hook.ID+"/deliveries", &ds)
	var recs []wire.AuditRecord
	getStrict(t, ctx, srv, "/sbx/v1/audit", &recs)
	if len(hooks) != 1 || one.ID != hook.ID || len(recs) == 0 {
		t.Errorf("strict reads: %d webhooks, %+v, %d audit records", len(hooks), one, len(recs))
	}
	// The webhook is as it was, secret and all (never shown).
	got, err := srv.Client.GetWebhook(ctx, hook.ID)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(got)
	if got.Name != "ok" || strings.Contains(string(raw), "ecret") || len(got.Events) != 1 {
		t.Errorf("webhook after bad input: %s", raw)
	}
	if strings.Contains(srv.Logs(), "panic") || strings.Contains(srv.Logs(), "status=500") {
		t.Error("server logged a panic or a 500")
	}
}
