package units

import (
	"math"
	"testing"
)

func TestBytes(t *testing.T) {
	for _, tc := range []struct {
		n          int64
		short, iec string
	}{
		{-1, "-1B", "-1B"},
		{0, "0B", "0B"},
		{512, "512B", "512B"},
		{1023, "1023B", "1023B"},
		{1024, "1.0K", "1.0KiB"},
		{1536, "1.5K", "1.5KiB"},
		{1<<20 - 1, "1024.0K", "1024.0KiB"},
		{1 << 20, "1.0M", "1.0MiB"},
		{3 << 19, "1.5M", "1.5MiB"},
		{2 << 30, "2.0G", "2.0GiB"},
		{5 << 40, "5.0T", "5.0TiB"},
		{1 << 50, "1.0P", "1.0PiB"},
		{math.MaxInt64, "8.0E", "8.0EiB"},
	} {
		if got := Bytes(tc.n, Short); got != tc.short {
			t.Errorf("Bytes(%d, Short) = %q, want %q", tc.n, got, tc.short)
		}
		if got := Bytes(tc.n, IEC); got != tc.iec {
			t.Errorf("Bytes(%d, IEC) = %q, want %q", tc.n, got, tc.iec)
		}
	}
}
