package api

import (
	"encoding/json"
	"net/http"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/network"
	"github.com/sbxdev/sbx/wire"
)

func unsupportedEgress(proxy, rules json.RawMessage) error {
	if len(proxy) > 0 && string(proxy) != "null" {
		return errdefs.New(errdefs.ErrInvalidArgument, "network.egressProxy is not supported by sbx")
	}
	if len(rules) > 0 && string(rules) != "null" && string(rules) != "{}" {
		return errdefs.New(errdefs.ErrInvalidArgument, "network.rules (request transforms) are not supported by sbx")
	}
	return nil
}

// createPolicy turns a create request's egress fields into a policy; nil
// means the server's default.
func createPolicy(allowInternet *bool, n *wire.SandboxNetwork) (*network.Egress, error) {
	if allowInternet == nil && n == nil {
		return nil, nil
	}
	p := network.Policy{AllowInternetAccess: allowInternet}
	if n != nil {
		if err := unsupportedEgress(n.EgressProxy, n.Rules); err != nil {
			return nil, err
		}
		p.AllowOut, p.DenyOut = n.AllowOut, n.DenyOut
	}
	e, err := network.ParsePolicy(p)
	if err != nil {
		return nil, err
	}
	return &e, nil
}

func (s *Server) updateNetwork(w http.ResponseWriter, r *http.Request) error {
	var req wire.NetworkUpdate
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if err := unsupportedEgress(req.EgressProxy, req.Rules); err != nil {
		return err
	}
	p, err := network.ParsePolicy(network.Policy{AllowOut: req.AllowOut, DenyOut: req.DenyOut, AllowInternetAccess: req.AllowInternetAccess})
	if err != nil {
		return err
	}
	if err := s.mgr.SetNetwork(r.Context(), r.PathValue("id"), p); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// allowInternet is GET /sandboxes/{id}'s allowInternetAccess: as set, nil
// when not set (or without networking).
func (s *Server) allowInternet(id string) *bool {
	p, ok := s.mgr.NetworkPolicy(id)
	if !ok {
		return nil
	}
	return p.AllowInternetAccess
}

// withEgress adds sandbox id's allowOut and denyOut to n.
func (s *Server) withEgress(n *wire.SandboxNetwork, id string) *wire.SandboxNetwork {
	p, ok := s.mgr.NetworkPolicy(id)
	if !ok {
		return n
	}
	if n == nil {
		n = &wire.SandboxNetwork{}
	}
	n.AllowOut, n.DenyOut = p.AllowOut, p.DenyOut
	return n
}
