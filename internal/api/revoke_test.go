package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/sandbox"
)

func TestRevocations(t *testing.T) {
	v := NewRevocations()
	a1, doneA1 := v.Track(context.Background(), "a")
	a2, doneA2 := v.Track(context.Background(), "a")
	b, doneB := v.Track(context.Background(), "b")
	defer doneB()
	if v.Open("a") != 2 || v.Open("b") != 1 {
		t.Fatalf("Open = %d, %d; want 2, 1", v.Open("a"), v.Open("b"))
	}
	doneA2()
	doneA2() // twice is fine
	if v.Open("a") != 1 || !errors.Is(context.Cause(a2), context.Canceled) {
		t.Errorf("after done: %d open, cause %v", v.Open("a"), context.Cause(a2))
	}
	if n := v.Revoke("a"); n != 1 {
		t.Errorf("Revoke(a) ended %d; want 1", n)
	}
	select {
	case <-a1.Done():
	default:
		t.Fatal("a revoked request goes on")
	}
	if !errors.Is(context.Cause(a1), ErrRevoked) {
		t.Errorf("cause = %v; want ErrRevoked", context.Cause(a1))
	}
	if b.Err() != nil || v.Open("b") != 1 {
		t.Errorf("revoking a ended b's request: %v", b.Err())
	}
	doneA1()
	if v.Revoke("a") != 0 || v.Open("a") != 0 {
		t.Error("a has requests left after Revoke and done")
	}
}

// TestRevokeEndsOpenRequests: a request a key has open on the control
// plane, and a data-plane request for a sandbox whose token the key was
// given, end within a second of the key's removal; the key is refused
// from then on.
func TestRevokeEndsOpenRequests(t *testing.T) {
	ctx := context.Background()
	s := newTestServer(t, sandbox.Config{})
	s.SetReady(true)
	rec, secret, err := s.keys.Create(ctx, "leaked", "", false)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	ended := make(chan error, 1)
	long := s.auth(func(w http.ResponseWriter, r *http.Request) error {
		close(started)
		<-r.Context().Done()
		ended <- context.Cause(r.Context())
		return nil
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		req := httptest.NewRequest("GET", "/stream", nil)
		req.Header.Set("X-API-Key", secret)
		long.ServeHTTP(httptest.NewRecorder(), req)
	}()
	<-started

	// A data-plane request for a sandbox whose token the key got.
	s.holders.add("sb1", rec.ID)
	s.holders.add("sb2", s.keyID(t, s.adminKey))
	dp, doneDP := s.TrackDataPlane(httptest.NewRequest("GET", "/process.Process/Start", nil), "sb1")
	defer doneDP()
	other, doneOther := s.TrackDataPlane(httptest.NewRequest("GET", "/process.Process/Start", nil), "sb2")
	defer doneOther()

	revoked := time.Now()
	if w := s.do(t, "DELETE", "/sbx/v1/keys/"+rec.ID, s.adminKey, ""); w.Code != http.StatusNoContent {
		t.Fatalf("DELETE key = %d %s", w.Code, w.Body)
	}
	select {
	case cause := <-ended:
		if !errors.Is(cause, ErrRevoked) {
			t.Errorf("the open request ended with %v; want ErrRevoked", cause)
		}
	case <-time.After(time.Second):
		t.Fatal("the revoked key's open request still runs a second later")
	}
	wg.Wait()
	select {
	case <-dp.Context().Done():
	case <-time.After(time.Second - time.Since(revoked)):
		t.Fatal("the data-plane request of the revoked key's sandbox still runs")
	}
	if other.Context().Err() != nil {
		t.Error("another key's data-plane request ended too")
	}
	wantError(t, s.do(t, "GET", "/v2/sandboxes", secret, ""), 401, "invalid API key")

	// Removed by another server sharing the store: seen at Refresh.
	rec2, _, err := s.keys.Create(ctx, "elsewhere", "", false)
	if err != nil {
		t.Fatal(err)
	}
	ctx2, done2 := s.keys.Revocations().Track(ctx, rec2.ID)
	defer done2()
	if err := s.db.DeleteAPIKey(ctx, rec2.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.keys.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(context.Cause(ctx2), ErrRevoked) {
		t.Errorf("a key removed in the store: its request's cause is %v after Refresh; want ErrRevoked", context.Cause(ctx2))
	}
}
