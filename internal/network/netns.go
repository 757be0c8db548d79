package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// openHostNS opens the network namespace of the calling thread, the host's.
//
// Not /proc/self/ns/net: that is the main thread's, and a goroutine that
// ends locked to the main thread after entering a sandbox's namespace
// leaves the main thread parked there for good.
func openHostNS() (*os.File, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("open host netns: %w", err)
	}
	return f, nil
}

// prepareNSDir makes dir a shared mount point (as `ip netns` does with
// /run/netns), so that unmounting a namespace file here also unmounts the
// copies that mount namespaces created meanwhile (a box's, before it pivots)
// hold; otherwise such a copy would keep a dead sandbox's namespace alive.
func prepareNSDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s a shared mount: %w", dir, err)
	}
	// Not a mount point yet: bind it onto itself first.
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s a shared mount: %w", dir, err)
	}
	return nil
}

// nsSpec is what createNS builds.
type nsSpec struct {
	path     string // where the namespace is bind-mounted
	host     string // name of the veth's host side
	addr, gw netip.Addr
	bits     int // prefix length of the link (30)
	// owner, when not nil, makes the namespace owned by a new user
	// namespace with this mapping, bind-mounted at userPath.
	owner    *UserMapping
	userPath string
}

// UserMapping is the id mapping of the user namespace a sandbox runs in:
// ids 0..Size-1 in it are host ids HostID..HostID+Size-1.
type UserMapping struct {
	HostID, Size uint32
}

// createNS creates a network namespace bind-mounted at s.path holding
// loopback and eth0 (s.addr/s.bits, default route via s.gw), the peer of a
// veth whose other side, s.host, is left in the calling process's
// namespace, down and unaddressed. IPv6 is disabled in the namespace.
//
// The namespace is made on a throw-away OS thread (unshare affects only the
// calling thread, and a thread whose namespace changed must never run other
// goroutines), so the server's own threads never leave the host namespace.
func createNS(s nsSpec, hostNS *os.File, pool *nsPool) error {
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o400)
	if err != nil {
		return fmt.Errorf("create netns file: %w", err)
	}
	f.Close()
	undo := func() {
		unix.Unmount(s.path, unix.MNT_DETACH)
		os.Remove(s.path)
		if s.owner != nil {
			unix.Unmount(s.userPath, unix.MNT_DETACH)
			os.Remove(s.userPath)
		}
	}
	if s.owner != nil {
		if err := ownedNS(s, pool); err != nil {
			undo()
			return err
		}
	}
	errc := make(chan error, 1)
	go func() {
		// No UnlockOSThread: the thread exits with this goroutine
		// instead of going back to the scheduler in the wrong namespace.
		runtime.LockOSThread()
		errc <- inNewNS(s, int(hostNS.Fd()))
	}()
	if err := <-errc; err != nil {
		undo()
		return err
	}
	return nil
}

// ownedNS creates a user namespace with mapping s.owner and a network
// namespace owned by it, bind-mounted at s.userPath and s.path.
//
// Why: a box in a user namespace mounts a fresh /sys for its network
// namespace, which the kernel allows only to a user namespace that owns
// that network namespace. So the box joins this user namespace (same
// mapping as it would have made itself) and this network namespace. A
// process is needed to create a user namespace (a multi-threaded one cannot
// unshare it), so a short-lived child holds them while they are
// bind-mounted.
func ownedNS(s nsSpec, pool *nsPool) error {
	f, err := os.OpenFile(s.userPath, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o400)
	if err != nil {
		return fmt.Errorf("create userns file: %w", err)
	}
	f.Close()
	pair, ok := pool.take(*s.owner)
	if !ok {
		if pair, err = spawnNS(*s.owner); err != nil {
			return err
		}
	}
	defer pair.close()
	// /proc/self/fd is the process's fd table, shared by every thread.
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", pair.user.Fd()), s.userPath, "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind userns: %w", err)
	}
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", pair.net.Fd()), s.path, "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind netns: %w", err)
	}
	return nil
}

// nsPair is a user namespace and a network namespace it owns, held open.
type nsPair struct {
	user, net *os.File
}

func (p nsPair) close() {
	p.user.Close()
	p.net.Close()
}

// spawnNS creates a user namespace with mapping owner and a network
// namespace owned by it, through a short-lived child, and returns them open.
func spawnNS(owner UserMapping) (nsPair, error) {
	cmd := exec.Command("/bin/cat")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nsPair{}, err
	}
	m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(owner.HostID), Size: int(owner.Size)}}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: m,
		GidMappings: m,
		// The box's processes change groups (setgroups) when the agent
		// runs a command as another user; Go denies that by default.
		GidMappingsEnableSetgroups: true,
		Pdeathsig:                  syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nsPair{}, fmt.Errorf("start namespace holder: %w", err)
	}
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	pid := cmd.Process.Pid
	user, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", pid))
	if err != nil {
		return nsPair{}, fmt.Errorf("open userns: %w", err)
	}
	net, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		user.Close()
		return nsPair{}, fmt.Errorf("open netns: %w", err)
	}
	return nsPair{user: user, net: net}, nil
}

// nsPool keeps a few namespace pairs ready, so that a create does not wait
// for a child process and the kernel's network namespace set-up: a
// background filler tops it up after each take. The pairs are for one
// mapping (the server's); the first take with a mapping starts the filler.
type nsPool struct {
	size int
	log  interface{ Warn(string, ...any) }

	mu      sync.Mutex
	owner   *UserMapping
	ready   []nsPair
	kick    chan struct{}
	done    chan struct{}
	stopped bool
	wg      sync.WaitGroup
}

func newNSPool(size int, log interface{ Warn(string, ...any) }) *nsPool {
	return &nsPool{size: size, log: log, kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// take returns a ready pair for owner, if there is one, and asks for a
// refill.
func (p *nsPool) take(owner UserMapping) (nsPair, bool) {
	if p == nil {
		return nsPair{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nsPair{}, false
	}
	if p.owner == nil {
		o := owner
		p.owner = &o
		p.wg.Add(1)
		go p.fill(o)
	}
	defer p.poke()
	if *p.owner != owner || len(p.ready) == 0 {
		return nsPair{}, false
	}
	pair := p.ready[len(p.ready)-1]
	p.ready = p.ready[:len(p.ready)-1]
	return pair, true
}

func (p *nsPool) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// fill keeps the pool at its size until stop.
func (p *nsPool) fill(owner UserMapping) {
	defer p.wg.Done()
	for {
		for {
			p.mu.Lock()
			full := len(p.ready) >= p.size || p.stopped
			p.mu.Unlock()
			if full {
				break
			}
			pair, err := spawnNS(owner)
			if err != nil {
				p.log.Warn("prepare a network namespace", "err", err)
				break // creates make their own; retried on the next take
			}
			p.mu.Lock()
			if p.stopped {
				p.mu.Unlock()
				pair.close()
				return
			}
			p.ready = append(p.ready, pair)
			p.mu.Unlock()
		}
		select {
		case <-p.kick:
		case <-p.done:
			return
		}
	}
}

// stop ends the filler and releases the ready pairs.
func (p *nsPool) stop() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	close(p.done)
	for _, pair := range p.ready {
		pair.close()
	}
	p.ready = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// inNewNS runs on a locked thread: it moves the thread into the sandbox's
// network namespace (a new one, or the one ownedNS made) and builds it.
func inNewNS(s nsSpec, hostFd int) error {
	if s.owner != nil {
		fd, err := unix.Open(s.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open netns: %w", err)
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("enter netns: %w", err)
		}
	} else {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare netns: %w", err)
		}
		tid := unix.Gettid()
		if err := unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", tid), s.path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind netns: %w", err)
		}
	}
	// /proc/sys/net is the calling thread's namespace's. IPv6 off before
	// eth0 exists, so it never gets even a link-local address: sandboxes
	// have IPv4 only, and the rules are written for IPv4.
	for _, p := range []string{"/proc/sys/net/ipv6/conf/all/disable_ipv6", "/proc/sys/net/ipv6/conf/default/disable_ipv6"} {
		if err := os.WriteFile(p, []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("disable IPv6: %w", err)
		}
	}
	// Route family only: with no families named, netlink opens xfrm and
	// netfilter sockets too, which fail where their modules are not loaded
	// (xfrm_user), and this handle only sets up links, addresses and routes.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "eth0", MTU: hostMTU()},
		PeerName:      s.host,
		PeerNamespace: netlink.NsFd(hostFd),
	}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", s.host, err)
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find eth0: %w", err)
	}
	ipn := &net.IPNet{IP: s.addr.AsSlice(), Mask: net.CIDRMask(s.bits, 32)}
	if err := h.AddrAdd(eth0, &netlink.Addr{IPNet: ipn}); err != nil {
		return fmt.Errorf("address eth0: %w", err)
	}
	if err := h.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("eth0 up: %w", err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: s.gw.AsSlice()}); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	return nil
}

// hostMTU is the MTU for sandbox links: 1500, the common Ethernet MTU.
func hostMTU() int { return 1500 }

// setupHostSide addresses and brings up the host side of a sandbox's veth.
func setupHostSide(s nsSpec) error {
	link, err := netlink.LinkByName(s.host)
	if err != nil {
		return fmt.Errorf("find %s: %w", s.host, err)
	}
	// No IPv6 on the host side either: no link-local address through
	// which the sandbox could reach host services bound to [::].
	if err := os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", s.host, "disable_ipv6"), []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("disable IPv6 on %s: %w", s.host, err)
	}
	ipn := &net.IPNet{IP: s.gw.AsSlice(), Mask: net.CIDRMask(s.bits, 32)}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipn}); err != nil {
		return fmt.Errorf("address %s: %w", s.host, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("%s up: %w", s.host, err)
	}
	return nil
}

// deleteNS removes the host side of a sandbox's veth (its peer goes with
// it) and the namespaces' bind mounts. Missing pieces are not errors.
func deleteNS(path, host string) error {
	var errs []error
	if link, err := netlink.LinkByName(host); err == nil {
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", host, err))
		}
	} else if !isNotFound(err) {
		errs = append(errs, fmt.Errorf("find %s: %w", host, err))
	}
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("unmount %s: %w", path, err))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	up := path + userSuffix
	if err := unix.Unmount(up, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("unmount %s: %w", up, err))
	}
	if err := os.Remove(up); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// userSuffix names the user namespace file beside a network namespace's.
const userSuffix = ".user"

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf)
}

// nsMounted reports whether path is a mounted network namespace.
func nsMounted(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}
