package proxy

import "testing"

func TestHostPort(t *testing.T) {
	for _, tc := range []struct {
		addr string
		port int
		ok   bool
	}{
		{"port-3000:80", 3000, true},
		{portHost(65535) + ":80", 65535, true},
		{"port-3000", 3000, true},
		{"agent:80", 0, false},
		{"port-x:80", 0, false},
	} {
		port, err := hostPort(tc.addr)
		if (err == nil) != tc.ok || (tc.ok && port != tc.port) {
			t.Errorf("hostPort(%q) = %d, %v", tc.addr, port, err)
		}
	}
}
