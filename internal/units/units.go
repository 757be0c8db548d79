// Package units writes quantities for people to read: byte counts with a
// binary prefix ("1.5M", "1.5MiB").
package units

import "fmt"

// ByteStyle is how [Bytes] writes a binary prefix.
type ByteStyle int

const (
	// Short writes the prefix's letter alone: "1.5M". The CLI's tables
	// use it, where columns are narrow and the unit is plain.
	Short ByteStyle = iota
	// IEC writes the IEC symbol: "1.5MiB". Template build progress and
	// error messages use it, where the number stands alone in a sentence.
	IEC
)

// Bytes writes n bytes with a binary prefix (powers of 1024) and one
// decimal: "512B", "1.5M" or "1.5MiB" (by style), "2.0G" or "2.0GiB". A
// count under 1024, negative ones included, is written in bytes.
func Bytes(n int64, style ByteStyle) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	suffix := ""
	if style == IEC {
		suffix = "iB"
	}
	return fmt.Sprintf("%.1f%c%s", float64(n)/float64(div), "KMGTPE"[exp], suffix)
}
