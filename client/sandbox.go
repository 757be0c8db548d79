package client

import (
	"context"
	"encoding/base64"
	"net/http"
	"strconv"
	"time"

	"connectrpc.com/connect"

	"github.com/sbxdev/sbx/gen/process"
	"github.com/sbxdev/sbx/gen/process/processconnect"
)

// EnvdPort is the sandbox port of the agent's envd API; data-plane requests
// name it in the E2b-Sandbox-Port header.
const EnvdPort = 49983

// Data-plane headers, as the e2b SDKs send them.
const (
	headerSandboxID    = "E2b-Sandbox-Id"
	headerSandboxPort  = "E2b-Sandbox-Port"
	headerAccessToken  = "X-Access-Token"
	headerKeepalive    = "Keepalive-Ping-Interval"
	keepaliveIntervalS = "50"
)

// Sandbox is a handle on one sandbox, returned by [Client.CreateSandbox] and
// [Client.ConnectSandbox]. Its exported fields are the server's answer; its
// methods run processes in the sandbox through the data plane. A Sandbox is
// safe for concurrent use. It is built from the server's [wire.Sandbox];
// its own JSON is what `sbx create --json` prints.
type Sandbox struct {
	ID          string `json:"sandboxID"`
	TemplateID  string `json:"templateID"`
	ClientID    string `json:"clientID,omitempty"`
	EnvdVersion string `json:"envdVersion,omitempty"`
	// EnvdAccessToken authorises data-plane calls to the sandbox's agent.
	EnvdAccessToken string `json:"envdAccessToken,omitempty"`
	// Domain is the domain under which the sandbox's ports are reachable as
	// {port}-{sandboxID}.{domain}.
	Domain string `json:"domain,omitempty"`
	// TrafficAccessToken authorises requests to the sandbox's own ports,
	// when the server requires one.
	TrafficAccessToken string `json:"trafficAccessToken,omitempty"`
	// Runtime is the runtime the sandbox runs on ("runc", "runsc"), as
	// reported on create. An sbx extension.
	Runtime string `json:"runtime,omitempty"`

	c *Client
}

// Kill destroys the sandbox.
func (s *Sandbox) Kill(ctx context.Context) error { return s.c.KillSandbox(ctx, s.ID) }

// SetTimeout sets how long from now the sandbox lives; see [Client.SetTimeout].
func (s *Sandbox) SetTimeout(ctx context.Context, d time.Duration) error {
	return s.c.SetTimeout(ctx, s.ID, d)
}

// Info returns the sandbox's current details.
func (s *Sandbox) Info(ctx context.Context) (*SandboxInfo, error) { return s.c.GetSandbox(ctx, s.ID) }

// sandboxTransport adds the headers that route a request through the
// server's proxy to this sandbox's agent.
type sandboxTransport struct {
	base      http.RoundTripper
	id, token string
	userAgent string
	// port is the sandbox port requests go to; 0 means the agent's
	// (EnvdPort).
	port int
}

func (t *sandboxTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(headerSandboxID, t.id)
	port := EnvdPort
	if t.port != 0 {
		port = t.port
	}
	r.Header.Set(headerSandboxPort, strconv.Itoa(port))
	if t.token != "" {
		r.Header.Set(headerAccessToken, t.token)
	}
	if t.userAgent != "" && r.Header.Get("User-Agent") == "" {
		r.Header.Set("User-Agent", t.userAgent)
	}
	return t.base.RoundTrip(r)
}

// rpc returns a client of the agent's process service. It is cheap; one is
// made per call so that Sandbox needs no lock.
func (s *Sandbox) rpc() processconnect.ProcessClient {
	hc := *s.c.http
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = &sandboxTransport{base: base, id: s.ID, token: s.EnvdAccessToken, userAgent: s.c.userAgent}
	return processconnect.NewProcessClient(&hc, s.c.baseURL.String())
}

// withUser sets the header choosing the user a process runs as; empty means
// the template's default user.
func withUser[T any](req *connect.Request[T], user string) *connect.Request[T] {
	if user != "" {
		req.Header().Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":")))
	}
	return req
}

// ProcessInfo describes a process running in a sandbox.
type ProcessInfo struct {
	PID  uint32            `json:"pid"`
	Tag  string            `json:"tag,omitempty"`
	Cmd  string            `json:"cmd"`
	Args []string          `json:"args,omitempty"`
	Env  map[string]string `json:"envs,omitempty"`
	Cwd  string            `json:"cwd,omitempty"`
}

// ListProcesses returns the processes started through the agent that are
// still running.
func (s *Sandbox) ListProcesses(ctx context.Context) ([]ProcessInfo, error) {
	resp, err := s.rpc().List(ctx, connect.NewRequest(&process.ListRequest{}))
	if err != nil {
		return nil, rpcErr("list processes", err)
	}
	out := make([]ProcessInfo, 0, len(resp.Msg.GetProcesses()))
	for _, p := range resp.Msg.GetProcesses() {
		cfg := p.GetConfig()
		out = append(out, ProcessInfo{
			PID: p.GetPid(), Tag: p.GetTag(),
			Cmd: cfg.GetCmd(), Args: cfg.GetArgs(), Env: cfg.GetEnvs(), Cwd: cfg.GetCwd(),
		})
	}
	return out, nil
}
