package proxy

import "testing"

// TestBoundedPool checks that the large buffers are bounded: get hands out
// at most max buffers of the pool's size at once, then nil (the caller
// splices instead), and a buffer given back can be had again.
func TestBoundedPool(t *testing.T) {
	p := newBoundedPool(1<<10, 3)
	var got [][]byte
	for i := 0; i < 3; i++ {
		b := p.get()
		if len(b) != 1<<10 {
			t.Fatalf("buffer %d: %d bytes, want %d", i, len(b), 1<<10)
		}
		got = append(got, b)
	}
	if b := p.get(); b != nil {
		t.Fatalf("a fourth buffer with three of three in use: %d bytes", len(b))
	}
	p.put(got[0])
	if b := p.get(); len(b) != 1<<10 {
		t.Fatalf("after one was given back: %d bytes", len(b))
	}
	if b := p.get(); b != nil {
		t.Fatal("a buffer past the bound after a get and a put")
	}
	for _, b := range got[1:] {
		p.put(b)
	}
	if n := p.used.Load(); n != 1 {
		t.Fatalf("%d in use, want 1", n)
	}
}
