// Package l7 is sbx's intercepting egress proxy for HTTP and HTTPS: it
// applies a sandbox's network rules (header transforms, with secret
// placeholders filled in) to requests on their way out, and dials
// upstreams directly or through a SOCKS5 proxy.
//
// # Overview
//
// Package network decides whether a connection may leave at all (the
// allow/deny policy) and hands the allowed ones whose name matches a rule
// to [Proxy.Serve]. For TLS the proxy terminates the sandbox's handshake
// with a certificate for the requested name issued by the sandbox's own
// [CA] (whose certificate only that sandbox's trust store holds; its key
// stays on the host), opens its own TLS connection to the original
// destination, verifying it against the host's trust store and the
// operator's extra CAs, and relays HTTP/1.1 requests between the two,
// transforming each. Secret values are fetched per request through
// [Secrets] and exist only in the host's memory and on the upstream
// connection.
package l7

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// RuleSpec is one rule of E2B's network.rules as a create or update
// carries it.
type RuleSpec struct {
	Transform *TransformSpec `json:"transform,omitempty"`
}

// TransformSpec is a rule's transform: headers to set on matching
// requests (replacing any the sandbox sent).
type TransformSpec struct {
	Headers map[string]string `json:"headers,omitempty"`
}

// Rules are a policy's rules, parsed: per domain pattern, the headers to
// set. The zero value and nil match nothing.
type Rules struct {
	exact map[string]map[string]string
	// wild are the wildcard patterns, longest suffix first.
	wild []wildRule
	refs []string
	// tokens are the workload identity tokens the rules refer to.
	tokens []string
}

type wildRule struct {
	suffix  string // ".example.com"
	headers map[string]string
}

var (
	placeholderRE = regexp.MustCompile(`\$\{e2b\.([a-z]+)\.([a-z]+)\.([^{}]*)\}|\$\{e2b\.secrets\.([^{}]*)\}`)
	labelRE       = regexp.MustCompile(`^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$`)
)

// maxRules bounds a policy's rules.
const maxRules = 256

// ParseRules validates E2B's rules map. Keys are exact names or "*."
// wildcards, lower-cased; a domain's rules merge in order (a later rule's
// header wins). Errors are errdefs.ErrInvalidArgument.
func ParseRules(in map[string][]RuleSpec) (*Rules, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > maxRules {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "network.rules: at most %d domains", maxRules)
	}
	r := &Rules{exact: map[string]map[string]string{}}
	refs, toks := map[string]bool{}, map[string]bool{}
	for key, list := range in {
		dom := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(key)), ".")
		wild := strings.HasPrefix(dom, "*.")
		name := strings.TrimPrefix(dom, "*.")
		if err := checkDomain(name); err != nil {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "network.rules: key %q: %v (want a DNS name or \"*.\" and one)", key, err)
		}
		headers := map[string]string{}
		for _, rule := range list {
			if rule.Transform == nil {
				continue
			}
			for h, v := range rule.Transform.Headers {
				if !validHeaderName(h) {
					return nil, errdefs.New(errdefs.ErrInvalidArgument, "network.rules[%q]: %q is not a valid header name", key, h)
				}
				if strings.ContainsAny(v, "\r\n\x00") {
					return nil, errdefs.New(errdefs.ErrInvalidArgument, "network.rules[%q]: header %s: a value cannot hold CR, LF or NUL", key, h)
				}
				names, tokens, err := placeholders(v)
				if err != nil {
					return nil, errdefs.New(errdefs.ErrInvalidArgument, "network.rules[%q]: header %s: %v", key, h, err)
				}
				for _, n := range names {
					refs[n] = true
				}
				for _, n := range tokens {
					toks[n] = true
				}
				headers[http.CanonicalHeaderKey(h)] = v
			}
		}
		if wild {
			r.wild = append(r.wild, wildRule{suffix: "." + name, headers: headers})
		} else {
			r.exact[name] = headers
		}
	}
	sort.Slice(r.wild, func(i, j int) bool { return len(r.wild[i].suffix) > len(r.wild[j].suffix) })
	for n := range refs {
		r.refs = append(r.refs, n)
	}
	sort.Strings(r.refs)
	for n := range toks {
		r.tokens = append(r.tokens, n)
	}
	sort.Strings(r.tokens)
	return r, nil
}

func checkDomain(s string) error {
	if s == "" || s == "*" {
		return fmt.Errorf("a bare wildcard names no domain")
	}
	if len(s) > 253 {
		return fmt.Errorf("longer than 253 characters")
	}
	for _, l := range strings.Split(s, ".") {
		if !labelRE.MatchString(l) {
			return fmt.Errorf("label %q is not a DNS label", l)
		}
	}
	return nil
}

func validHeaderName(h string) bool {
	if h == "" || len(h) > 256 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	switch strings.ToLower(h) {
	case "host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer":
		// Framing headers: setting them would let a rule desynchronise
		// the request from its body.
		return false
	}
	return true
}

// placeholders returns the secret names and the workload identity token
// names (${e2b.identity.tokens.NAME}) v refers to.
func placeholders(v string) (secrets, tokens []string, err error) {
	for _, m := range placeholderRE.FindAllStringSubmatch(v, -1) {
		if m[4] != "" {
			secrets = append(secrets, m[4])
			continue
		}
		if m[1] == "identity" && m[2] == "tokens" && m[3] != "" {
			tokens = append(tokens, m[3])
			continue
		}
		return nil, nil, fmt.Errorf("unknown placeholder %s", m[0])
	}
	if strings.Contains(v, "${e2b.secrets.}") {
		return nil, nil, fmt.Errorf("a secret placeholder names no secret")
	}
	return secrets, tokens, nil
}

// Secrets returns the names of the secrets the rules refer to, sorted.
func (r *Rules) Secrets() []string {
	if r == nil {
		return nil
	}
	return r.refs
}

// Tokens returns the names of the workload identity tokens the rules
// refer to, sorted.
func (r *Rules) Tokens() []string {
	if r == nil {
		return nil
	}
	return r.tokens
}

// Empty reports whether r has no rule.
func (r *Rules) Empty() bool { return r == nil || len(r.exact)+len(r.wild) == 0 }

// Match returns the headers of the rule for host (lower-case, no trailing
// dot): an exact rule, else the longest wildcard; rule sets do not merge.
func (r *Rules) Match(host string) (map[string]string, bool) {
	if r == nil || host == "" {
		return nil, false
	}
	if h, ok := r.exact[host]; ok {
		return h, true
	}
	for _, w := range r.wild {
		if strings.HasSuffix(host, w.suffix) {
			return w.headers, true
		}
	}
	return nil, false
}

// Placeholder kinds, as fill's get receives them.
const (
	kindSecret = "secret"
	kindToken  = "token"
)

// fill replaces every secret and identity token placeholder in v with its
// value, from get(kind, name). allowed, when not nil, limits which may be
// filled in (keys kind + ":" + name); others stay as written.
func fill(v string, allowed map[string]bool, get func(kind, name string) (string, error)) (string, error) {
	var ferr error
	out := placeholderRE.ReplaceAllStringFunc(v, func(m string) string {
		sm := placeholderRE.FindStringSubmatch(m)
		kind, name := kindSecret, sm[4]
		if name == "" {
			if sm[1] != "identity" || sm[2] != "tokens" || sm[3] == "" {
				return m
			}
			kind, name = kindToken, sm[3]
		}
		if allowed != nil && !allowed[kind+":"+name] || ferr != nil {
			return m
		}
		val, err := get(kind, name)
		if err != nil {
			ferr = err
			return m
		}
		return val
	})
	return out, ferr
}
