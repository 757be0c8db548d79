package sandbox

// Ready returns how many pooled sandboxes are ready, by template: a
// per-template pool's under its template's name, the default pool's
// under "" (the default template). The fleet's placement prefers a node
// whose pool can serve a create at once.
func (w WarmPools) Ready() map[string]int {
	m := w.m
	out := map[string]int{}
	count := func(name string, w *warmPool) {
		w.mu.Lock()
		if n := len(w.ready); n > 0 {
			out[name] += n
		}
		w.mu.Unlock()
	}
	if m.warm != nil {
		count("", m.warm)
	}
	for name, w := range m.warmTpl {
		count(name, w)
	}
	return out
}
