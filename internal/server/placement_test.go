package server

import (
	"math"
	"strings"
	"testing"

	"github.com/sbxdev/sbx/internal/store"
)

// TestPlacementScore checks the score table: the scarcest of free CPU,
// memory and disk, overcommit counted, plus the pooled and cached bonuses.
func TestPlacementScore(t *testing.T) {
	gib := int64(1 << 30)
	machine := func(cpus, memGiB, diskUsed, diskTotal int64) store.NodeMachine {
		return store.NodeMachine{CPUCount: cpus, MemoryTotalBytes: memGiB * gib, Disks: []store.NodeDisk{{UsedBytes: diskUsed * gib, TotalBytes: diskTotal * gib}}}
	}
	for _, tc := range []struct {
		name string
		m    store.NodeMachine
		load store.NodeLoad
		tpl  string
		want float64
	}{
		{"empty", machine(8, 16, 0, 100), store.NodeLoad{}, "", 1},
		{"memory scarcest", machine(8, 16, 0, 100), store.NodeLoad{CPUs: 2, MemoryMB: 12 * 1024}, "", 0.25},
		{"cpu scarcest", machine(8, 16, 0, 100), store.NodeLoad{CPUs: 6, MemoryMB: 1024}, "", 0.25},
		{"disk scarcest", machine(8, 16, 90, 100), store.NodeLoad{CPUs: 1}, "", 0.1},
		{"cpu overcommitted", machine(4, 16, 0, 100), store.NodeLoad{CPUs: 6}, "", -0.5},
		{"nothing measured", store.NodeMachine{}, store.NodeLoad{CPUs: 1}, "", 0},
		{"cached template", withTemplates(machine(8, 16, 0, 100), "py"), store.NodeLoad{CPUs: 4}, "py", 0.5 + cachedBonus},
		{"base cached, default template", withTemplates(machine(8, 16, 0, 100), "base"), store.NodeLoad{CPUs: 4}, "", 0.5 + cachedBonus},
		{"another template cached", withTemplates(machine(8, 16, 0, 100), "py"), store.NodeLoad{CPUs: 4}, "go", 0.5},
		{"pooled and cached", withPool(withTemplates(machine(8, 16, 0, 100), "py"), "py", 1), store.NodeLoad{CPUs: 4}, "py", 0.5 + pooledBonus + cachedBonus},
		{"default pool, base", withPool(machine(8, 16, 0, 100), "", 2), store.NodeLoad{CPUs: 4}, "base", 0.5 + pooledBonus},
		{"pool of another template", withPool(machine(8, 16, 0, 100), "py", 2), store.NodeLoad{CPUs: 4}, "", 0.5},
	} {
		if got := score(&store.Node{ID: "n", Machine: tc.m}, tc.load, tc.tpl); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: score %v, want %v", tc.name, got, tc.want)
		}
	}
}

func withTemplates(m store.NodeMachine, names ...string) store.NodeMachine {
	m.Templates = names
	return m
}

func withPool(m store.NodeMachine, tpl string, n int) store.NodeMachine {
	m.Pooled = map[string]int{tpl: n}
	return m
}

// TestPlacementOrder checks best of K: of the K picked (the first K of
// the permutation), the best scored goes first, the first picked on a
// tie; the rest follow, best first.
func TestPlacementOrder(t *testing.T) {
	gib := int64(1 << 30)
	m := store.NodeMachine{CPUCount: 8, MemoryTotalBytes: 16 * gib}
	nodes := []*store.Node{{ID: "a", Machine: m}, {ID: "b", Machine: m}, {ID: "c", Machine: m}, {ID: "d", Machine: withPool(m, "py", 1)}}
	loads := map[string]store.NodeLoad{"a": {CPUs: 1}, "b": {CPUs: 2}, "c": {CPUs: 4}, "d": {CPUs: 5}}
	ids := func(ns []*store.Node) string {
		var s []string
		for _, n := range ns {
			s = append(s, n.ID)
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		perm []int
		k    int
		tpl  string
		want string
	}{
		{[]int{1, 2, 0, 3}, 2, "", "b a c d"},   // b and c: b
		{[]int{2, 3, 0, 1}, 2, "", "c a b d"},   // c and d: c
		{[]int{2, 3, 0, 1}, 2, "py", "d a b c"}, // d's pool outweighs its load
		{[]int{3, 2, 1, 0}, 4, "", "a b c d"},   // every node: the best
		{[]int{3, 2, 1, 0}, 9, "", "a b c d"},   // k past the fleet
		{[]int{2, 1, 0, 3}, 1, "", "c a b d"},   // k 1: random
		{[]int{2, 1, 0, 3}, 0, "", "c a b d"},   // k 0 counts as 1
	} {
		perm := func(n int) []int { return tc.perm[:n] }
		if got := ids(order(nodes, loads, tc.tpl, tc.k, perm)); got != tc.want {
			t.Errorf("perm %v k %d %q: %s, want %s", tc.perm, tc.k, tc.tpl, got, tc.want)
		}
	}
	// A tie goes to the first picked.
	tied := []*store.Node{{ID: "x", Machine: m}, {ID: "y", Machine: m}}
	if got := ids(order(tied, nil, "", 2, func(int) []int { return []int{1, 0} })); got != "y x" {
		t.Errorf("tie: %s, want y x", got)
	}
	if got := order(nodes[:1], loads, "", 2, nil); len(got) != 1 {
		t.Fatalf("one node: %v", got)
	}
}
