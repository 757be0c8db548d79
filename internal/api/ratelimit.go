package api

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// RateLimit is a token bucket's settings: Rate tokens a second, up to
// Burst held. A zero Rate disables the limit.
type RateLimit struct {
	Rate  float64
	Burst int
}

// limiter keeps one token bucket per API key id, in memory: with several
// nodes each node limits separately, so a fleet of N nodes lets a key
// through up to N times the rate when calls are spread across them.
type limiter struct {
	cfg RateLimit
	now func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

// keyIDKey is the context key of the id of the API key a request was
// authenticated with.
type keyIDKey struct{}

type bucket struct {
	tokens float64
	at     time.Time
}

// newLimiter returns a limiter; nil when cfg disables it (a nil limiter
// lets everything through).
func newLimiter(cfg RateLimit, now func() time.Time) *limiter {
	if cfg.Rate <= 0 {
		return nil
	}
	if cfg.Burst < 1 {
		cfg.Burst = 1
	}
	if now == nil {
		now = time.Now
	}
	return &limiter{cfg: cfg, now: now, buckets: map[string]*bucket{}}
}

// take takes a token of key's bucket. When there is none it reports how
// long until there is one. The map holds one bucket per key that passed
// authentication, so it is bounded by the number of keys.
func (l *limiter) take(key string) (ok bool, wait time.Duration) {
	if l == nil {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	burst := float64(l.cfg.Burst)
	if b == nil {
		b = &bucket{tokens: burst, at: now}
		l.buckets[key] = b
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = math.Min(burst, b.tokens+d.Seconds()*l.cfg.Rate)
		b.at = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.cfg.Rate * float64(time.Second))
}

// limit answers 429 with Retry-After (whole seconds, rounded up) when the
// caller's key has no token left in l.
func (s *Server) limit(l *limiter, w http.ResponseWriter, keyID, what string) error {
	ok, wait := l.take(keyID)
	if ok {
		return nil
	}
	secs := max(1, int64(math.Ceil(wait.Seconds())))
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	return errdefs.New(errdefs.ErrResourceExhausted, "rate limit of %s exceeded for this API key: retry after %d s", what, secs)
}

// limitCreates wraps a handler that creates sandboxes with the per-key
// create limit, which is taken besides the limit on API calls.
func (s *Server) limitCreates(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, _ := r.Context().Value(keyIDKey{}).(string)
		if err := s.limit(s.createLimit, w, id, "sandbox creates"); err != nil {
			return err
		}
		return h(w, r)
	}
}
