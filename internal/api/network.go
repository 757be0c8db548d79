package api

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/identity"
	"github.com/sbxdev/sbx/internal/network"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

// l7Fields decodes a request's egressProxy and rules (null and absent
// alike mean none).
func l7Fields(proxy, rules json.RawMessage) (*network.SOCKS5, map[string][]network.RuleSpec, error) {
	var px *network.SOCKS5
	if len(proxy) > 0 && !bytes.Equal(proxy, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(proxy))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&px); err != nil || px == nil {
			return nil, nil, errdefs.New(errdefs.ErrInvalidArgument, "network.egressProxy: want {\"address\": \"host:port\", \"username\", \"password\"}")
		}
	}
	var rs map[string][]network.RuleSpec
	if len(rules) > 0 && !bytes.Equal(rules, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(rules))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rs); err != nil {
			return nil, nil, errdefs.New(errdefs.ErrInvalidArgument, "network.rules: want {\"domain\": [{\"transform\": {\"headers\": {\"Name\": \"value\"}}}]}")
		}
	}
	return px, rs, nil
}

// createPolicy turns a create request's egress fields into a policy; nil
// means the server's default.
func createPolicy(allowInternet *bool, n *wire.SandboxNetwork) (*network.Egress, error) {
	if allowInternet == nil && n == nil {
		return nil, nil
	}
	p := network.Policy{AllowInternetAccess: allowInternet}
	if n != nil {
		px, rs, err := l7Fields(n.EgressProxy, n.Rules)
		if err != nil {
			return nil, err
		}
		p.AllowOut, p.DenyOut, p.EgressProxy, p.Rules = n.AllowOut, n.DenyOut, px, rs
	}
	e, err := network.ParsePolicy(p)
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// iamTokens decodes a create request's iam ({"tokens": {...}}; absent,
// null and an empty map register none) and checks that every identity
// token policy e's rules name is among them.
func iamTokens(raw json.RawMessage, e *network.Egress) (map[string]store.IAMToken, error) {
	var iam struct {
		Tokens map[string]*identity.Token `json:"tokens"`
	}
	if len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&iam); err != nil {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "iam: want {\"tokens\": {\"NAME\": {\"audience\": \"...\", \"tokenType\": \"JWT-SVID\"}}}")
		}
	}
	checked := map[string]identity.Token{}
	for name, t := range iam.Tokens {
		if t == nil {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "iam.tokens[%q]: want {\"audience\": \"...\", \"tokenType\": \"JWT-SVID\"}", name)
		}
		checked[name] = *t
	}
	if err := identity.CheckTokens(checked); err != nil {
		return nil, err
	}
	var out map[string]store.IAMToken
	for name, t := range checked {
		if out == nil {
			out = map[string]store.IAMToken{}
		}
		out[name] = store.IAMToken{Audience: t.Audience, TokenType: t.TokenType}
	}
	return out, checkTokenRefs(e, out)
}

// checkTokenRefs refuses a policy whose rules name an identity token the
// sandbox did not register.
func checkTokenRefs(e *network.Egress, tokens map[string]store.IAMToken) error {
	if e == nil {
		return nil
	}
	for _, name := range e.TokenRefs() {
		if _, ok := tokens[name]; !ok {
			return errdefs.New(errdefs.ErrInvalidArgument, "network.rules: identity token %q is not registered in the sandbox's iam.tokens", name)
		}
	}
	return nil
}

// maxHTTPSPorts bounds a create's httpsPorts.
const maxHTTPSPorts = 64

// envdPort is the sandbox agent's port (proxy.EnvdPort), which has its own
// protocol and cannot be an HTTPS port.
const envdPort = 49983

// ingressParams checks a create request's ingress options (E2B's
// maskRequestHost and httpsPorts) and keeps them in life, which the
// sandbox's record stores.
func ingressParams(n *wire.SandboxNetwork, life *sandbox.Lifecycle) error {
	if n == nil {
		return nil
	}
	if m := n.MaskRequestHost; m != "" {
		host := strings.ReplaceAll(m, "${PORT}", "1")
		if len(m) > 255 || !maskHostRE.MatchString(host) {
			return errdefs.New(errdefs.ErrInvalidArgument, "network.maskRequestHost: %q is not a host name (letters, digits, '.', '-', '_', an optional :port; ${PORT} stands for the port)", m)
		}
		life.MaskRequestHost = m
	}
	if len(n.HTTPSPorts) > maxHTTPSPorts {
		return errdefs.New(errdefs.ErrInvalidArgument, "network.httpsPorts: at most %d ports", maxHTTPSPorts)
	}
	var ports []int
	for _, p := range n.HTTPSPorts {
		if p < 1 || p > 65535 {
			return errdefs.New(errdefs.ErrInvalidArgument, "network.httpsPorts: %d is not a port (1-65535)", p)
		}
		if p == envdPort {
			return errdefs.New(errdefs.ErrInvalidArgument, "network.httpsPorts: the envd port (%d) cannot be listed", p)
		}
		if !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	slices.Sort(ports)
	life.HTTPSPorts = ports
	return nil
}

var maskHostRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9._-]*[A-Za-z0-9_])?(:[0-9]{1,5})?$`)

// withEgressCA points a sandbox with L7 rules at its egress CA, unless the
// request sets the variables itself.
func withEgressCA(e *network.Egress, env map[string]string) map[string]string {
	if e == nil || !e.Intercepts() {
		return env
	}
	out := maps.Clone(env)
	if out == nil {
		out = map[string]string{}
	}
	for k, v := range sandbox.EgressCAEnv {
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	return out
}

// checkPolicySecrets refuses a policy whose rules name a secret the
// request's team does not have.
func (s *Server) checkPolicySecrets(ctx context.Context, team string, e *network.Egress) error {
	if e == nil {
		return nil
	}
	return s.checkSecretRefs(ctx, team, e.SecretRefs())
}

func (s *Server) updateNetwork(w http.ResponseWriter, r *http.Request) error {
	var req wire.NetworkUpdate
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	px, rs, err := l7Fields(req.EgressProxy, req.Rules)
	if err != nil {
		return err
	}
	p, err := network.ParsePolicy(network.Policy{AllowOut: req.AllowOut, DenyOut: req.DenyOut, AllowInternetAccess: req.AllowInternetAccess, EgressProxy: px, Rules: rs})
	if err != nil {
		return err
	}
	if err := s.checkPolicySecrets(r.Context(), teamOf(r), &p); err != nil {
		return err
	}
	if len(p.TokenRefs()) > 0 {
		sb, err := s.mgr.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		if err := checkTokenRefs(&p, sb.Life.IAMTokens); err != nil {
			return err
		}
	}
	if err := s.mgr.Network().Set(r.Context(), r.PathValue("id"), p); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// allowInternet is GET /sandboxes/{id}'s allowInternetAccess: as set, nil
// when not set (or without networking).
func (s *Server) allowInternet(id string) *bool {
	p, ok := s.mgr.Network().Policy(id)
	if !ok {
		return nil
	}
	return p.AllowInternetAccess
}

// withEgress adds sandbox id's allowOut, denyOut, rules and egressProxy
// (without its password, which no answer carries) to n.
func (s *Server) withEgress(n *wire.SandboxNetwork, id string) *wire.SandboxNetwork {
	p, ok := s.mgr.Network().Policy(id)
	if !ok {
		return n
	}
	if n == nil {
		n = &wire.SandboxNetwork{}
	}
	n.AllowOut, n.DenyOut = p.AllowOut, p.DenyOut
	if len(p.Rules) > 0 {
		n.Rules, _ = json.Marshal(p.Rules)
	}
	if p.EgressProxy != nil {
		n.EgressProxy, _ = json.Marshal(network.SOCKS5{Address: p.EgressProxy.Address, Username: p.EgressProxy.Username})
	}
	return n
}
