package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/network"
	"github.com/sbxdev/sbx/wire"
)

// Network is the network layer the Manager gives each sandbox a network
// with (internal/network's *Network). Without one (Config.Network nil) a
// sandbox's network namespace holds only loopback.
//
// Methods are safe for concurrent use; the Manager never calls two of them
// for the same id at once.
type Network interface {
	// Setup prepares sandbox id's namespace with egress policy p.
	// With owner set, the namespace is owned by a new user namespace
	// with that mapping (Endpoint.UserNS), which the box must join.
	Setup(ctx context.Context, id string, p network.Egress, owner *network.UserMapping) (network.Endpoint, error)
	// SetPolicy replaces a running sandbox's policy.
	SetPolicy(ctx context.Context, id string, p network.Egress) error
	// Policy returns sandbox id's policy.
	Policy(id string) (network.Policy, bool)
	// Endpoint returns sandbox id's network, if it has one.
	Endpoint(id string) (network.Endpoint, bool)
	// Teardown removes sandbox id's network; unknown ids are not an error.
	Teardown(ctx context.Context, id string) error
	// Prune removes the networks of sandboxes not in live.
	Prune(ctx context.Context, live []string) error
}

// networkAvailable refuses a create's egress policy p on a server without
// networking, unless it asks for nothing (the policy itself was checked by
// network.ParsePolicy).
func (m *Manager) networkAvailable(p *network.Egress) error {
	if p == nil || m.cfg.Network != nil {
		return nil
	}
	pol := p.Policy()
	if len(pol.AllowOut)+len(pol.DenyOut)+len(pol.Rules) > 0 || pol.EgressProxy != nil || pol.AllowInternetAccess != nil && *pol.AllowInternetAccess {
		return errdefs.New(errdefs.ErrFailedPrecondition, "networking is disabled on this server (sbx serve --network none): sandboxes have no egress to configure")
	}
	return nil
}

// setupNetwork gives sandbox id its network (or, when it has one, as on a
// resume, keeps it) and points the resolver of its root filesystem at sbx's
// DNS forwarder. A new network gets egress policy policy (nil: the
// server's default, or the policy the sandbox had, for one whose network
// was lost). It returns the namespace the box and the user namespace
// owning it join ("" without a network layer).
func (m *Manager) setupNetwork(ctx context.Context, id, rootfs string, policy *network.Egress) (netns, userns string, err error) {
	if m.cfg.Network == nil {
		return "", "", nil
	}
	ep, ok := m.cfg.Network.Endpoint(id)
	if !ok {
		var pol network.Egress
		if policy != nil {
			pol = *policy
		} else if p, ok := m.cfg.Network.Policy(id); ok {
			// A sandbox whose network was lost (a host restart) boots
			// again with the policy it had.
			if pol, err = network.ParsePolicy(p); err != nil {
				return "", "", fmt.Errorf("sandbox network: %w", err)
			}
		}
		var owner *network.UserMapping
		if m.cfg.IDMap != nil {
			owner = &network.UserMapping{HostID: m.cfg.IDMap.HostID, Size: m.cfg.IDMap.Size}
		}
		if ep, err = m.cfg.Network.Setup(ctx, id, pol, owner); err != nil {
			return "", "", fmt.Errorf("sandbox network: %w", err)
		}
		if len(ep.CACert) > 0 {
			if err := installEgressCA(rootfs, ep.CACert, m.cfg.IDMap); err != nil {
				return "", "", err
			}
		}
	}
	if err := writeResolvConf(rootfs, ep.DNS, m.cfg.IDMap); err != nil {
		return "", "", err
	}
	return ep.NetNS, ep.UserNS, nil
}

// writeResolvConf writes rootfs/etc/resolv.conf naming dns. It resolves the
// path inside rootfs and replaces a symlink instead of following it.
// Threat: a template (an imported image, say) whose /etc or resolv.conf is
// a symlink to a host path would otherwise have the server overwrite a host
// file.
func writeResolvConf(rootfs string, dns netip.Addr, idmap *IDMap) error {
	root, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	defer unix.Close(root)
	etc, err := unix.Openat2(root, "etc", &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if errors.Is(err, unix.ENOENT) {
		if err := unix.Mkdirat(root, "etc", 0o755); err != nil {
			return fmt.Errorf("resolv.conf: %w", err)
		}
		etc, err = unix.Openat2(root, "etc", &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	}
	if err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	defer unix.Close(etc)
	if err := unix.Unlinkat(etc, "resolv.conf", 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	fd, err := unix.Openat(etc, "resolv.conf", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	f := os.NewFile(uintptr(fd), "resolv.conf")
	defer f.Close()
	if _, err := fmt.Fprintf(f, "# written by sbx: the sandbox's DNS goes through sbx, which applies its egress policy\nnameserver %s\noptions edns0\n", dns); err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	if idmap != nil {
		// Owned by the sandbox's root, so it may edit it.
		if err := f.Chown(int(idmap.HostID), int(idmap.HostID)); err != nil {
			return fmt.Errorf("resolv.conf: %w", err)
		}
	}
	return nil
}

// EgressCAFile is where a sandbox with L7 egress rules finds its egress
// CA's certificate; the CA is also appended to the system bundle.
const (
	EgressCAFile = "/etc/ssl/certs/sbx-egress-ca.pem"
	systemBundle = "/etc/ssl/certs/ca-certificates.crt"
)

// EgressCAEnv are the variables that point TLS clients at the egress CA:
// Node.js adds NODE_EXTRA_CA_CERTS to its own bundle; Python's requests
// and OpenSSL read a whole bundle, the system one with the CA appended.
var EgressCAEnv = map[string]string{
	"NODE_EXTRA_CA_CERTS": EgressCAFile,
	"REQUESTS_CA_BUNDLE":  systemBundle,
	"SSL_CERT_FILE":       systemBundle,
}

// installEgressCA puts the sandbox's egress CA certificate (never its
// key) into rootfs's trust store: EgressCAFile, and appended to the
// system bundle. Paths resolve inside rootfs, as writeResolvConf's do.
func installEgressCA(rootfs string, cert []byte, idmap *IDMap) error {
	root, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("egress CA: %w", err)
	}
	defer unix.Close(root)
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	dir, err := unix.Openat2(root, "etc/ssl/certs", how)
	if errors.Is(err, unix.ENOENT) {
		for _, d := range []string{"etc", "etc/ssl", "etc/ssl/certs"} {
			if err := unix.Mkdirat(root, d, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("egress CA: %w", err)
			}
		}
		dir, err = unix.Openat2(root, "etc/ssl/certs", how)
	}
	if err != nil {
		return fmt.Errorf("egress CA: %w", err)
	}
	defer unix.Close(dir)
	write := func(name string, flags int) error {
		fd, err := unix.Openat(dir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|flags, 0o644)
		if err != nil {
			return fmt.Errorf("egress CA: %s: %w", name, err)
		}
		f := os.NewFile(uintptr(fd), name)
		defer f.Close()
		if flags&unix.O_APPEND != 0 {
			if _, err := f.Write([]byte("\n")); err != nil {
				return fmt.Errorf("egress CA: %s: %w", name, err)
			}
		}
		if _, err := f.Write(cert); err != nil {
			return fmt.Errorf("egress CA: %s: %w", name, err)
		}
		if idmap != nil {
			if err := f.Chown(int(idmap.HostID), int(idmap.HostID)); err != nil {
				return fmt.Errorf("egress CA: %s: %w", name, err)
			}
		}
		return nil
	}
	if err := write("sbx-egress-ca.pem", unix.O_TRUNC); err != nil {
		return err
	}
	return write("ca-certificates.crt", unix.O_APPEND)
}

// teardownNetwork removes sandbox id's network, if any.
func (m *Manager) teardownNetwork(ctx context.Context, id string) {
	if m.cfg.Network == nil {
		return
	}
	if err := m.cfg.Network.Teardown(ctx, id); err != nil {
		m.log.Error("remove sandbox network", "sandbox_id", id, "err", err)
	}
}

// pruneNetworks removes networks whose sandbox is gone. Paused sandboxes
// keep theirs (a resume boots the box into it again).
func (m *Manager) pruneNetworks(ctx context.Context) error {
	if m.cfg.Network == nil {
		return nil
	}
	all, err := m.db.ListSandboxes(ctx, StateRunning, StateCreating, StatePausing, StatePaused, StateResuming)
	if err != nil {
		return err
	}
	live := make([]string, 0, len(all))
	for _, sb := range all {
		live = append(live, sb.ID)
	}
	return m.cfg.Network.Prune(ctx, live)
}

// Set replaces the egress policy of running sandbox id. New
// connections obey it at once.
func (n NetworkUse) Set(ctx context.Context, id string, p network.Egress) error {
	m := n.m
	if m.cfg.Network == nil {
		return errdefs.New(errdefs.ErrFailedPrecondition, "networking is disabled on this server (sbx serve --network none)")
	}
	unlock := m.lock(id)
	defer unlock()
	sb, err := m.getRunning(ctx, id)
	if err != nil {
		return err
	}
	if err := m.cfg.Network.SetPolicy(ctx, id, p); err != nil {
		return err
	}
	m.putEvent(ctx, newEvent(sb, wire.EventUpdated, wire.SandboxEventData{Reason: reasonOf(ctx), Network: true}))
	m.log.Info("sandbox network policy changed", "sandbox_id", id, "allow_out", p.Policy().AllowOut, "deny_out", p.Policy().DenyOut)
	return nil
}

// forkPolicy returns the egress policy a fork of sandbox id starts with:
// its source's.
func (m *Manager) forkPolicy(id string) (*network.Egress, error) {
	p, ok := m.networkPolicy(id)
	if !ok {
		return nil, nil
	}
	e, err := network.ParsePolicy(p)
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// networkPolicy returns sandbox id's egress policy; ok is false when the
// sandbox has no network (or the server none).
func (m *Manager) networkPolicy(id string) (p network.Policy, ok bool) {
	if m.cfg.Network == nil {
		return network.Policy{}, false
	}
	return m.cfg.Network.Policy(id)
}
