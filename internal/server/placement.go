package server

import (
	"math"
	"slices"

	"github.com/sbxdev/sbx/internal/store"
)

// Placement. A create goes to the best of K live nodes picked at random
// (K is --placement-k, 2 by default: the power of two choices spreads
// load nearly as well as looking at every node, without every placer
// herding onto the same emptiest node), then, where that node refuses it
// for capacity, to the others in order of score. A node's score is its
// scarcest free resource as a share of its total (CPU, memory and disk
// together: a node with memory to spare but a full disk is full), plus a
// bonus when it holds a pooled sandbox of the template (a create served
// from the pool starts at once) and a smaller one when it has the
// template cached (no fetch from the object store). Draining and lost
// nodes are never candidates (liveNodes leaves them out).

// Score bonuses, in shares of a node's resources: a pooled sandbox is
// worth a node a quarter fuller; a cached template a tenth.
const (
	pooledBonus = 0.25
	cachedBonus = 0.10
)

// defaultPlacementK is --placement-k's default.
const defaultPlacementK = 2

// score is node n's placement score for a create of template tpl ("" the
// default template), given its load.
func score(n *store.Node, load store.NodeLoad, tpl string) float64 {
	m := n.Machine
	free := math.Inf(1)
	share := func(total, used float64) {
		if total <= 0 {
			return // not reported: no say
		}
		// Not clamped at 0: CPU is overcommitted, and a node further
		// over is still the worse one.
		free = math.Min(free, (total-used)/total)
	}
	share(float64(m.CPUCount), load.CPUs)
	share(float64(m.MemoryTotalBytes), float64(load.MemoryMB<<20))
	for _, d := range m.Disks {
		share(float64(d.TotalBytes), float64(d.UsedBytes))
	}
	if math.IsInf(free, 1) {
		free = 0
	}
	s := free
	if m.Pooled[tpl] > 0 || (isDefaultTemplate(tpl) && (m.Pooled[""] > 0 || m.Pooled["base"] > 0)) {
		s += pooledBonus
	}
	if slices.Contains(m.Templates, tpl) || (isDefaultTemplate(tpl) && slices.Contains(m.Templates, "base")) {
		s += cachedBonus
	}
	return s
}

func isDefaultTemplate(tpl string) bool { return tpl == "" || tpl == "base" }

// order puts nodes in placement order for a create of tpl: the best of k
// picked at random (perm shuffles indexes, rand.Perm in production), then
// the rest, best first.
func order(nodes []*store.Node, loads map[string]store.NodeLoad, tpl string, k int, perm func(int) []int) []*store.Node {
	if len(nodes) < 2 {
		return nodes
	}
	k = max(1, min(k, len(nodes)))
	better := func(a, b *store.Node) int {
		sa, sb := score(a, loads[a.ID], tpl), score(b, loads[b.ID], tpl)
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return 0
	}
	var first *store.Node
	for _, i := range perm(len(nodes))[:k] {
		if first == nil || better(nodes[i], first) < 0 {
			first = nodes[i]
		}
	}
	rest := slices.DeleteFunc(slices.Clone(nodes), func(n *store.Node) bool { return n == first })
	slices.SortStableFunc(rest, better)
	return append([]*store.Node{first}, rest...)
}
