package sandbox

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDialSocket(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	serve := func(path string) {
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(filepath.Base(path)))
				c.Close()
			}
		}()
	}
	good, other := filepath.Join(dir, "agent.sock"), filepath.Join(dir, "host.sock")
	serve(good)
	serve(other)
	c, err := DialSocket(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 32)
	n, _ := c.Read(b)
	c.Close()
	if string(b[:n]) != "agent.sock" {
		t.Fatalf("read %q through the socket", b[:n])
	}

	// A symlink in place of the socket (a box pointing the server at a host
	// socket) and things that are not sockets are refused.
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(other, link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	for _, p := range []string{link, file, filepath.Join(dir, "missing")} {
		if c, err := DialSocket(ctx, p); err == nil {
			c.Close()
			t.Errorf("DialSocket(%s) succeeded", p)
		} else if !strings.Contains(err.Error(), p) {
			t.Errorf("DialSocket(%s) = %v, want the path in the error", p, err)
		}
	}
}
