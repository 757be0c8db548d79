package network

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// forwarder is the sandboxes' DNS server. It listens on one port on every
// address (the nftables rules redirect every sandbox's port-53 traffic to it
// and let nobody else in), answers each query as the sandbox's policy says,
// and forwards allowed ones to the upstream resolvers.
type forwarder struct {
	n         *Network
	upstreams []string
	udp       *net.UDPConn
	tcp       *net.TCPListener
	port      uint16
	wg        sync.WaitGroup
	closeOnce sync.Once
	done      chan struct{}
	// ctx ends with close, cutting upstream exchanges short.
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	conns map[net.Conn]struct{} // TCP clients, closed by close
}

func newForwarder(n *Network, upstreams []string) (*forwarder, error) {
	// One port for UDP and TCP: take a free UDP port and bind TCP to it,
	// retrying if TCP's is taken.
	for try := 0; try < 20; try++ {
		pc, err := markedListen.ListenPacket(context.Background(), "udp4", ":0")
		if err != nil {
			return nil, fmt.Errorf("DNS forwarder: %w", err)
		}
		udp := pc.(*net.UDPConn)
		port := udp.LocalAddr().(*net.UDPAddr).Port
		ln, err := markedListen.Listen(context.Background(), "tcp4", fmt.Sprintf(":%d", port))
		if err != nil {
			udp.Close()
			continue
		}
		tcp := ln.(*net.TCPListener)
		ctx, cancel := context.WithCancel(context.Background())
		return &forwarder{n: n, upstreams: upstreams, udp: udp, tcp: tcp, port: uint16(port), done: make(chan struct{}), ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}, nil
	}
	return nil, errors.New("DNS forwarder: no port free for both UDP and TCP")
}

func (f *forwarder) close() {
	f.closeOnce.Do(func() {
		close(f.done)
		f.cancel()
		f.udp.Close()
		f.tcp.Close()
		f.mu.Lock()
		for c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
	})
	f.wg.Wait()
}

// serve starts answering queries in the background.
func (f *forwarder) serve() {
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		buf := make([]byte, 65535)
		for {
			nr, from, err := f.udp.ReadFromUDPAddrPort(buf)
			if err != nil {
				select {
				case <-f.done:
					return
				default:
					continue
				}
			}
			q := append([]byte(nil), buf[:nr]...)
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				if resp := f.answer(q, from.Addr(), false); resp != nil {
					f.udp.WriteToUDPAddrPort(resp, from)
				}
			}()
		}
	}()
	go func() {
		defer f.wg.Done()
		for {
			c, err := f.tcp.AcceptTCP()
			if err != nil {
				select {
				case <-f.done:
					return
				default:
					continue
				}
			}
			f.mu.Lock()
			select {
			case <-f.done:
				f.mu.Unlock()
				c.Close()
				return
			default:
			}
			f.conns[c] = struct{}{}
			f.mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer func() {
					f.mu.Lock()
					delete(f.conns, c)
					f.mu.Unlock()
				}()
				f.serveTCP(c)
			}()
		}
	}()
}

// serveTCP answers length-prefixed queries on c until it goes idle.
func (f *forwarder) serveTCP(c *net.TCPConn) {
	defer c.Close()
	from := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
	for {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		resp := f.answer(q, from, true)
		if resp == nil {
			return
		}
		out := binary.BigEndian.AppendUint16(nil, uint16(len(resp)))
		if _, err := c.Write(append(out, resp...)); err != nil {
			return
		}
	}
}

// answer returns the response to query q from address from, or nil to
// drop it.
func (f *forwarder) answer(q []byte, from netip.Addr, tcp bool) []byte {
	b := f.n.boxByAddr(from)
	if b == nil {
		return nil // not a sandbox of ours (the rules let no one else in)
	}
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil || h.Response {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return refuse(h, qs, dnsmessage.RCodeFormatError)
	}
	name := strings.ToLower(strings.TrimSuffix(qs[0].Name.String(), "."))
	pol := f.n.policyOf(b)
	ok, listed := pol.dnsAllowed(name)
	if !ok {
		f.n.log.Info("DNS query refused by policy", "sandbox_id", b.id, "name", name)
		return refuse(h, qs, dnsmessage.RCodeRefused)
	}
	ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
	defer cancel()
	resp, err := f.exchange(ctx, q, tcp)
	if err != nil {
		f.n.log.Warn("DNS upstream failed", "sandbox_id", b.id, "name", name, "err", err)
		return refuse(h, qs, dnsmessage.RCodeServerFailure)
	}
	if listed {
		addrs, ttl := answerAddrs(resp)
		f.n.allowResolved(b, name, addrs, ttl)
	}
	return resp
}

// exchange sends q to the upstreams in turn and returns the first answer.
func (f *forwarder) exchange(ctx context.Context, q []byte, tcp bool) ([]byte, error) {
	var errs []error
	for _, up := range f.upstreams {
		resp, err := exchangeOne(ctx, up, q, tcp)
		if err == nil {
			return resp, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func exchangeOne(ctx context.Context, upstream string, q []byte, tcp bool) ([]byte, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	network := "udp"
	if tcp {
		network = "tcp"
	}
	c, err := d.DialContext(ctx, network, upstream)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	if tcp {
		msg := binary.BigEndian.AppendUint16(nil, uint16(len(q)))
		if _, err := c.Write(append(msg, q...)); err != nil {
			return nil, err
		}
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return nil, err
		}
		resp := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, resp); err != nil {
			return nil, err
		}
		return resp, nil
	}
	if _, err := c.Write(q); err != nil {
		return nil, err
	}
	id := binary.BigEndian.Uint16(q)
	buf := make([]byte, 65535)
	for {
		nr, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		// Ignore stray datagrams that do not answer this query.
		if nr >= 12 && binary.BigEndian.Uint16(buf) == id {
			return append([]byte(nil), buf[:nr]...), nil
		}
	}
}

// refuse builds an answer with rcode to a query with header h and
// questions qs.
func refuse(h dnsmessage.Header, qs []dnsmessage.Question, rcode dnsmessage.RCode) []byte {
	rh := dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired, RecursionAvailable: true, RCode: rcode}
	bld := dnsmessage.NewBuilder(nil, rh)
	bld.StartQuestions()
	for _, q := range qs {
		bld.Question(q)
	}
	out, err := bld.Finish()
	if err != nil {
		return nil
	}
	return out
}

// answerAddrs returns the IPv4 addresses in a response's answers and the
// smallest TTL among them.
func answerAddrs(resp []byte) ([]netip.Addr, time.Duration) {
	var p dnsmessage.Parser
	if _, err := p.Start(resp); err != nil {
		return nil, 0
	}
	if err := p.SkipAllQuestions(); err != nil {
		return nil, 0
	}
	var addrs []netip.Addr
	ttl := uint32(1<<32 - 1)
	for {
		h, err := p.AnswerHeader()
		if err != nil {
			break
		}
		if h.Type != dnsmessage.TypeA {
			p.SkipAnswer()
			continue
		}
		r, err := p.AResource()
		if err != nil {
			break
		}
		addrs = append(addrs, netip.AddrFrom4(r.A))
		ttl = min(ttl, h.TTL)
	}
	return addrs, time.Duration(ttl) * time.Second
}

// lookupA resolves name's IPv4 addresses through the upstreams.
func (f *forwarder) lookupA(ctx context.Context, name string) ([]netip.Addr, time.Duration, error) {
	n, err := dnsmessage.NewName(name + ".")
	if err != nil {
		return nil, 0, err
	}
	var idb [2]byte
	binary.BigEndian.PutUint16(idb[:], uint16(time.Now().UnixNano()))
	bld := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: binary.BigEndian.Uint16(idb[:]), RecursionDesired: true})
	bld.StartQuestions()
	bld.Question(dnsmessage.Question{Name: n, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	q, err := bld.Finish()
	if err != nil {
		return nil, 0, err
	}
	resp, err := f.exchange(ctx, q, false)
	if err != nil {
		return nil, 0, err
	}
	addrs, ttl := answerAddrs(resp)
	return addrs, ttl, nil
}
