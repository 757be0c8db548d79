package sandbox

import "testing"

func TestE2BWaitForPort(t *testing.T) {
	for cmd, want := range map[string]int{
		`[ -n "$(ss -Htuln sport = :8000)" ]`:   8000,
		` [ -n "$(ss -Htuln sport = :1)" ] `:    1,
		`[ -n "$(ss -Htuln sport = :70000)" ]`:  0,
		`[ -n "$(ss -Htuln sport = :80)" ]; rm`: 0,
		`curl -s localhost:8000`:                0,
		``:                                      0,
	} {
		got, ok := e2bWaitForPort(cmd)
		if got != want || ok != (want != 0) {
			t.Errorf("e2bWaitForPort(%q) = %d, %v; want %d", cmd, got, ok, want)
		}
	}
}
