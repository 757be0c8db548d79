package webhook

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

// TestDispatcherGivesUp sends an event to a receiver that always answers
// 500: it is tried MaxAttempts times, signed and with the same delivery id
// each time, then marked failed.
func TestDispatcherGivesUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	type hit struct {
		sig, id string
		body    []byte
	}
	hits := make(chan hit, 16)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusInternalServerError)
		hits <- hit{r.Header.Get(SignatureHeader), r.Header.Get(DeliveryIDHeader), b}
	}))
	defer rcv.Close()
	if err := db.PutWebhook(ctx, &store.Webhook{ID: "w", TeamID: store.DefaultTeamID, Name: "w", URL: rcv.URL, Events: []string{wire.EventKilled}, Enabled: true, Secret: "k", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	g := NewGuard([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, nil)
	d := New(db, g, Config{MaxAttempts: 3, FirstRetry: time.Millisecond, MaxBackoff: 5 * time.Millisecond}, slog.New(slog.DiscardHandler))
	go d.Run(ctx)
	if err := db.PutEvent(ctx, &store.Event{ID: "e1", Type: wire.EventKilled, SandboxID: "s", TeamID: store.DefaultTeamID, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	d.Stored(nil)
	for i := range 3 {
		select {
		case h := <-hits:
			var ev wire.SandboxEvent
			if err := json.Unmarshal(h.body, &ev); err != nil || ev.ID != "e1" || h.id != "e1" || h.sig != Sign("k", h.body) {
				t.Fatalf("attempt %d: id %q, signature %q, body %s", i+1, h.id, h.sig, h.body)
			}
		case <-ctx.Done():
			t.Fatalf("attempt %d never came", i+1)
		}
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ds, err := db.WebhookDeliveries(ctx, "w", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 1 && !ds[0].FailedAt.IsZero() {
			if ds[0].Attempts != 3 || ds[0].LastError == "" || !ds[0].DeliveredAt.IsZero() {
				t.Fatalf("given-up delivery %+v", ds[0])
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("never given up: %+v", ds)
		case <-tick.C:
		}
	}
	select {
	case <-hits:
		t.Fatal("a fourth attempt after giving up")
	default:
	}
}
