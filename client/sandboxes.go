package client

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sbxdev/sbx/wire"
)

// NoTimeout, as a sandbox timeout, asks for a sandbox with no time limit: it
// runs until it is killed. (A zero timeout means "the server's default".)
const NoTimeout time.Duration = -1

// Sandbox states reported in [SandboxInfo.State] and accepted by
// [ListOptions.States].
const (
	StateRunning = "running"
	StatePaused  = "paused"
)

// CreateOptions describe a sandbox to create.
type CreateOptions struct {
	// Template is the template ID or alias; empty means "base".
	Template string
	// Timeout is how long the sandbox lives before the server kills it.
	// Zero takes the server's default; NoTimeout means no limit. Durations
	// are sent in whole seconds, rounded up.
	Timeout time.Duration
	// Metadata is stored with the sandbox and can filter listings.
	Metadata map[string]string
	// Env is set in every process started in the sandbox, over the
	// template's environment.
	Env map[string]string
	// Runtime is the isolation runtime: "runc" (containers) or "runsc"
	// (gVisor, a user-space kernel between the sandbox and the host).
	// Empty takes the server's default. An sbx extension.
	Runtime string
	// CPUs (cores) and MemoryMB override the template's and the server's
	// defaults; zero keeps them. Values above the server's maxima fail
	// with [ErrInvalidArgument].
	CPUs     float64
	MemoryMB int
	// PrivateTraffic makes the sandbox's ports (other than the agent's)
	// reachable only with its [Sandbox.TrafficAccessToken], sent in the
	// [TrafficTokenHeader] header. By default they are public.
	PrivateTraffic bool
	// Lifecycle: what happens on timeout, persistence, idle pauses
	// (see [Lifecycle]).
	Lifecycle Lifecycle
	// Network is the sandbox's egress policy; nil takes the server's
	// default (internet access unless sbx serve runs with --internet=false).
	Network *NetworkPolicy
	// Volumes mounts volumes in the sandbox: absolute path → volume name.
	Volumes map[string]string
	// MaskRequestHost, when set, is the Host header requests to the
	// sandbox's ports carry ("${PORT}" stands for the port).
	MaskRequestHost string
	// HTTPSPorts are ports whose servers speak TLS (self-signed
	// certificates work): the server's proxy reaches them over TLS.
	HTTPSPorts []int
	// IAMTokens registers workload identity tokens, by name, that the
	// network rules may name with [IdentityPlaceholder].
	IAMTokens map[string]IAMToken
}

// ConnectOptions tune [Client.ConnectSandbox].
type ConnectOptions struct {
	// Timeout, when not zero, resets the sandbox's time limit as in
	// [Client.SetTimeout] (NoTimeout removes it).
	Timeout time.Duration
}

// SandboxInfo describes a sandbox as the server lists it. It is built
// from the server's [wire.ListedSandbox] and [wire.SandboxDetail]; its own
// JSON is what `sbx ls --json` prints.
type SandboxInfo struct {
	SandboxID  string    `json:"sandboxID"`
	TemplateID string    `json:"templateID"`
	ClientID   string    `json:"clientID,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	// EndAt is when the server will kill the sandbox; the zero time means
	// never (see HasTimeout).
	EndAt       time.Time         `json:"endAt"`
	CPUCount    int               `json:"cpuCount"`
	MemoryMB    int               `json:"memoryMB"`
	DiskSizeMB  int               `json:"diskSizeMB"`
	EnvdVersion string            `json:"envdVersion,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	// State is StateRunning, StatePaused or another lifecycle state.
	State string `json:"state"`
	// Runtime is the runtime the sandbox runs on ("runc", "runsc"). An sbx
	// extension.
	Runtime string `json:"runtime,omitempty"`
	// PauseKind tells how a paused sandbox was paused: PauseFrozen,
	// PauseMemory or PauseFilesystem.
	PauseKind string `json:"pauseKind,omitempty"`
	// Lifecycle is the sandbox's policy; filled by [Client.GetSandbox] only.
	Lifecycle *LifecycleInfo `json:"lifecycle,omitempty"`
	// EnvdAccessToken and Domain are filled by [Client.GetSandbox] only.
	EnvdAccessToken string `json:"envdAccessToken,omitempty"`
	Domain          string `json:"domain,omitempty"`
	// AllowInternetAccess and Network are the egress policy, filled by
	// [Client.GetSandbox] only: nil when not set.
	AllowInternetAccess *bool          `json:"allowInternetAccess,omitempty"`
	Network             *NetworkConfig `json:"network,omitempty"`
	// Error says why a sandbox in state "failed" failed (its box died: out
	// of memory, or exited), filled by [Client.GetSandbox] only. An sbx
	// extension.
	Error string `json:"error,omitempty"`
}

// HasTimeout reports whether the sandbox has a time limit.
func (s *SandboxInfo) HasTimeout() bool { return !s.EndAt.IsZero() }

// ListOptions filter [Client.ListSandboxes].
type ListOptions struct {
	// Metadata keeps sandboxes whose metadata has all these pairs.
	Metadata map[string]string
	// States keeps sandboxes in one of these states; empty means the
	// server's default (running ones).
	States []string
	// Limit is the page size asked of the server; every page is fetched
	// regardless. Zero takes the server's default.
	Limit int
}

// seconds turns a timeout into the wire's whole seconds: nil for the server
// default (0), 0 for NoTimeout, otherwise rounded up to at least 1.
func seconds(d time.Duration) *int64 {
	switch {
	case d == 0:
		return nil
	case d < 0:
		z := int64(0)
		return &z
	}
	s := int64((d + time.Second - 1) / time.Second)
	return &s
}

// CreateSandbox creates and starts a sandbox and returns a handle on it.
func (c *Client) CreateSandbox(ctx context.Context, opts CreateOptions) (*Sandbox, error) {
	tmpl := opts.Template
	if tmpl == "" {
		tmpl = "base"
	}
	if opts.Timeout < 0 && opts.Timeout != NoTimeout {
		return nil, fmt.Errorf("sbx: create sandbox: negative timeout %v: %w", opts.Timeout, ErrInvalidArgument)
	}
	if opts.CPUs < 0 || opts.MemoryMB < 0 {
		return nil, fmt.Errorf("sbx: create sandbox: negative CPUs or MemoryMB: %w", ErrInvalidArgument)
	}
	body := wire.NewSandbox{TemplateID: tmpl, Timeout: seconds(opts.Timeout), Metadata: opts.Metadata, EnvVars: opts.Env,
		Runtime: opts.Runtime}
	if opts.CPUs != 0 {
		body.CPUCount = &opts.CPUs
	}
	if opts.MemoryMB != 0 {
		mem := int64(opts.MemoryMB)
		body.MemoryMB = &mem
	}
	opts.Lifecycle.apply(&body)
	if opts.PrivateTraffic {
		public := false
		body.Network = &wire.SandboxNetwork{AllowPublicTraffic: &public}
	}
	opts.Network.apply(&body)
	if opts.MaskRequestHost != "" || len(opts.HTTPSPorts) > 0 {
		if body.Network == nil {
			body.Network = &wire.SandboxNetwork{}
		}
		body.Network.MaskRequestHost, body.Network.HTTPSPorts = opts.MaskRequestHost, opts.HTTPSPorts
	}
	if len(opts.IAMTokens) > 0 {
		body.IAM, _ = json.Marshal(map[string]any{"tokens": opts.IAMTokens})
	}
	for _, p := range slices.Sorted(maps.Keys(opts.Volumes)) {
		body.VolumeMounts = append(body.VolumeMounts, wire.SandboxVolumeMount{Name: opts.Volumes[p], Path: p})
	}
	var sb wire.Sandbox
	if _, err := c.do(ctx, http.MethodPost, "/v2/sandboxes", nil, body, &sb); err != nil {
		return nil, err
	}
	return c.handle(sb), nil
}

// ConnectSandbox returns a handle on an existing sandbox, resuming it if it
// is paused. opts may be nil.
func (c *Client) ConnectSandbox(ctx context.Context, id string, opts *ConnectOptions) (*Sandbox, error) {
	if id == "" {
		return nil, errNoID
	}
	var body wire.ConnectRequest
	if opts != nil {
		body.Timeout = seconds(opts.Timeout)
	}
	var w wire.Sandbox
	if _, err := c.do(ctx, http.MethodPost, "/v2/sandboxes/"+escape(id)+"/connect", nil, body, &w); err != nil {
		return nil, err
	}
	sb := c.handle(w)
	if sb.ID == "" {
		sb.ID = id
	}
	return sb, nil
}

// ListSandboxes returns the sandboxes matching opts (which may be nil),
// following the server's pages to the end.
func (c *Client) ListSandboxes(ctx context.Context, opts *ListOptions) ([]SandboxInfo, error) {
	q := url.Values{}
	if opts != nil {
		if len(opts.Metadata) > 0 {
			keys := make([]string, 0, len(opts.Metadata))
			for k := range opts.Metadata {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			md := url.Values{}
			for _, k := range keys {
				md.Set(k, opts.Metadata[k])
			}
			q.Set("metadata", md.Encode())
		}
		for _, s := range opts.States {
			q.Add("state", s)
		}
		if opts.Limit > 0 {
			q.Set("limit", strconv.Itoa(opts.Limit))
		}
	}
	all := []SandboxInfo{}
	seen := map[string]bool{}
	for {
		var page []wire.ListedSandbox
		resp, err := c.do(ctx, http.MethodGet, "/v2/sandboxes", q, nil, &page)
		if err != nil {
			return nil, err
		}
		for _, s := range page {
			all = append(all, listedInfo(s))
		}
		next := strings.TrimSpace(resp.header.Get("X-Next-Token"))
		if next == "" || len(page) == 0 || seen[next] {
			return all, nil
		}
		seen[next] = true
		q.Set("nextToken", next)
	}
}

// GetSandbox returns one sandbox's details.
func (c *Client) GetSandbox(ctx context.Context, id string) (*SandboxInfo, error) {
	if id == "" {
		return nil, errNoID
	}
	var d wire.SandboxDetail
	if _, err := c.do(ctx, http.MethodGet, "/sandboxes/"+escape(id), nil, nil, &d); err != nil {
		return nil, err
	}
	info := listedInfo(d.ListedSandbox)
	info.EnvdAccessToken = d.EnvdAccessToken
	info.Domain = deref(d.Domain)
	info.Lifecycle = &d.Lifecycle
	info.Error = d.Error
	info.AllowInternetAccess = d.AllowInternetAccess
	if d.Network != nil {
		info.Network = &NetworkConfig{AllowOut: d.Network.AllowOut, DenyOut: d.Network.DenyOut,
			MaskRequestHost: d.Network.MaskRequestHost, HTTPSPorts: d.Network.HTTPSPorts}
	}
	return &info, nil
}

// KillSandbox destroys a sandbox and everything in it.
func (c *Client) KillSandbox(ctx context.Context, id string) error {
	if id == "" {
		return errNoID
	}
	_, err := c.do(ctx, http.MethodDelete, "/sandboxes/"+escape(id), nil, nil, nil)
	return err
}

// SetTimeout sets how long from now the sandbox lives before the server
// kills it. NoTimeout (or 0) removes the limit.
func (c *Client) SetTimeout(ctx context.Context, id string, d time.Duration) error {
	if id == "" {
		return errNoID
	}
	if d < 0 && d != NoTimeout {
		return fmt.Errorf("sbx: set timeout: negative timeout %v: %w", d, ErrInvalidArgument)
	}
	s := seconds(d)
	if s == nil {
		z := int64(0)
		s = &z
	}
	_, err := c.do(ctx, http.MethodPost, "/sandboxes/"+escape(id)+"/timeout", nil, wire.TimeoutRequest{Timeout: s}, nil)
	return err
}

// Attach returns a handle on the sandbox that info describes, without a
// request, for info as [Client.GetSandbox] returns it (with its
// EnvdAccessToken). Unlike [Client.ConnectSandbox] it neither resumes a
// paused sandbox nor touches its timeout.
func (c *Client) Attach(info *SandboxInfo) *Sandbox {
	return &Sandbox{
		ID: info.SandboxID, TemplateID: info.TemplateID, ClientID: info.ClientID,
		EnvdVersion: info.EnvdVersion, EnvdAccessToken: info.EnvdAccessToken, Domain: info.Domain,
		c: c,
	}
}

// listedInfo is the SDK's view of a listed sandbox.
func listedInfo(s wire.ListedSandbox) SandboxInfo {
	return SandboxInfo{
		SandboxID: s.SandboxID, TemplateID: s.TemplateID, ClientID: s.ClientID, StartedAt: s.StartedAt, EndAt: s.EndAt,
		CPUCount: int(s.CPUCount), MemoryMB: int(s.MemoryMB), DiskSizeMB: int(s.DiskSizeMB), EnvdVersion: s.EnvdVersion,
		Metadata: s.Metadata, State: s.State, Runtime: s.Runtime, PauseKind: s.PauseKind,
	}
}

// handle is a handle on the sandbox that s describes.
func (c *Client) handle(s wire.Sandbox) *Sandbox {
	return &Sandbox{
		ID: s.SandboxID, TemplateID: s.TemplateID, ClientID: s.ClientID, EnvdVersion: s.EnvdVersion,
		EnvdAccessToken: s.EnvdAccessToken, Domain: deref(s.Domain), TrafficAccessToken: deref(s.TrafficAccessToken),
		Runtime: s.Runtime, c: c,
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
