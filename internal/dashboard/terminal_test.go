package dashboard

import (
	"bytes"
	"testing"
)

// TestTermReplay: a re-attach gets the last termReplay bytes of output,
// a second attach takes the terminal over, and a client that falls too
// far behind is dropped.
func TestTermReplay(t *testing.T) {
	tm := &term{id: "s", ts: newTerminals(nil, discard), stop: func() {}}
	defer func() {
		if tm.reap != nil {
			tm.reap.Stop()
		}
	}()
	var all bytes.Buffer
	for i := range 300 {
		chunk := bytes.Repeat([]byte{byte('a' + i%26)}, 1000)
		all.Write(chunk)
		tm.output(chunk)
	}
	a, replay, err := tm.attach()
	if err != nil {
		t.Fatal(err)
	}
	if want := all.Bytes()[all.Len()-termReplay:]; !bytes.Equal(replay, want) {
		t.Fatalf("replay of %d bytes, not the last %d of the output", len(replay), termReplay)
	}
	tm.output([]byte("live"))
	if got := <-a.out; string(got) != "live" {
		t.Errorf("attached got %q", got)
	}
	b, _, err := tm.attach()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.kicked:
	default:
		t.Error("the first attachment was not kicked by the second")
	}
	tm.detach(a) // the kicked one going must not detach the new one
	if tm.att != b || tm.reap != nil {
		t.Fatalf("after the old attachment left: att %p (want %p), reap %v", tm.att, b, tm.reap)
	}
	for range termQueue + 1 {
		tm.output([]byte("x"))
	}
	select {
	case <-b.kicked:
	default:
		t.Error("a client that fell behind was not dropped")
	}
	if tm.att != nil || tm.reap == nil {
		t.Errorf("after the drop: att %p, reap %v; want none attached and the kill armed", tm.att, tm.reap)
	}
	tm.ended(0)
	if _, _, err := tm.attach(); err == nil {
		t.Error("attached to an ended shell")
	}
}
