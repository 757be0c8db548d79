package cli

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// templatePoolsFlag is --warm-pool-template NAME[=N]: per-template warm
// pool sizes, repeatable or comma-separated (N defaults to 1; 0 turns a
// template's pool off).
type templatePoolsFlag struct{ m *map[string]int }

func (f templatePoolsFlag) String() string {
	if f.m == nil || *f.m == nil {
		return ""
	}
	var parts []string
	for name, n := range *f.m {
		parts = append(parts, fmt.Sprintf("%s=%d", name, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (f templatePoolsFlag) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, num, hasN := strings.Cut(part, "=")
		n := 1
		if hasN {
			var err error
			if n, err = strconv.Atoi(num); err != nil || n < 0 {
				return fmt.Errorf("%q: the size after = must be a whole number, 0 or more", part)
			}
		}
		if name == "" {
			return fmt.Errorf("%q: no template name", part)
		}
		if *f.m == nil {
			*f.m = map[string]int{}
		}
		(*f.m)[name] = n
	}
	return nil
}
