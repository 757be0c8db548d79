package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sbxdev/sbx/wire"
)

// Pause kinds reported in [SandboxInfo.PauseKind].
const (
	// PauseFrozen: the sandbox's processes are frozen in place; its memory
	// stays allocated on the host (runc).
	PauseFrozen = "frozen"
	// PauseMemory: memory and processes were saved to disk and the box
	// stopped; resuming restores them (runtimes with checkpoints: runsc).
	PauseMemory = "memory"
	// PauseFilesystem: the box was stopped and its files kept; resuming
	// starts it again over them, with fresh processes.
	PauseFilesystem = "filesystem"
)

// Lifecycle is a new sandbox's lifecycle policy. The zero value is E2B's
// default: killed at its timeout, everything deleted.
type Lifecycle struct {
	// Persistent sandboxes keep their filesystem across stops: a timeout
	// pauses them rather than killing them, and a lost box (a host
	// restart) leaves them paused with their files.
	Persistent bool
	// AutoPause pauses the sandbox at its timeout instead of killing it.
	AutoPause bool
	// FilesOnly makes the timeout pause keep files only (E2B's
	// autoPauseMemory: false).
	FilesOnly bool
	// AutoResume resumes the paused sandbox on the next request for it.
	AutoResume bool
	// IdlePause pauses the sandbox after this long without requests (whole
	// seconds); it implies AutoResume.
	IdlePause time.Duration
}

// LifecycleInfo is a sandbox's lifecycle policy as the server reports it
// (IdlePause in seconds).
type LifecycleInfo = wire.Lifecycle

// apply puts l into a create request's fields.
func (l Lifecycle) apply(f *wire.NewSandbox) {
	if l.Persistent {
		f.Lifecycle = "persistent"
	}
	if l.AutoPause {
		t := true
		f.AutoPause = &t
	}
	if l.FilesOnly {
		no := false
		f.AutoPauseMemory = &no
	}
	if l.AutoResume {
		f.AutoResume = &wire.AutoResume{Enabled: true}
	}
	if l.IdlePause > 0 {
		f.IdlePause = seconds(l.IdlePause)
	}
}

// PauseOptions tune [Client.Pause].
type PauseOptions struct {
	// FilesOnly stops the box keeping only its files (E2B's keepMemory:
	// false); resuming starts fresh processes.
	FilesOnly bool
}

// Pause pauses a running sandbox. Pausing a paused sandbox fails with
// [ErrConflict]. opts may be nil.
func (c *Client) Pause(ctx context.Context, id string, opts *PauseOptions) error {
	if id == "" {
		return errNoID
	}
	var body wire.PauseRequest
	if opts != nil && opts.FilesOnly {
		no := false
		body.Memory = &no
	}
	_, err := c.do(ctx, http.MethodPost, "/sandboxes/"+escape(id)+"/pause", nil, body, nil)
	return err
}

// ResumeOptions tune [Client.Resume].
type ResumeOptions struct {
	// Timeout is the resumed sandbox's time to live, as in CreateOptions.
	Timeout time.Duration
	// Reboot ignores a saved memory image and starts the box afresh over
	// its files.
	Reboot bool
}

// Resume resumes a paused sandbox and returns a handle on it. Resuming a
// running sandbox fails with [ErrConflict] ([Client.ConnectSandbox]
// resumes or attaches, whichever applies). opts may be nil.
func (c *Client) Resume(ctx context.Context, id string, opts *ResumeOptions) (*Sandbox, error) {
	if id == "" {
		return nil, errNoID
	}
	var body wire.ResumeRequest
	if opts != nil {
		body.Timeout = seconds(opts.Timeout)
		if opts.Reboot {
			no := false
			body.Memory = &no
		}
	}
	var sb wire.Sandbox
	if _, err := c.do(ctx, http.MethodPost, "/sandboxes/"+escape(id)+"/resume", nil, body, &sb); err != nil {
		return nil, err
	}
	return c.handle(sb), nil
}

// Pause pauses the sandbox; see [Client.Pause].
func (s *Sandbox) Pause(ctx context.Context, opts *PauseOptions) error {
	return s.c.Pause(ctx, s.ID, opts)
}

// SnapshotInfo describes a snapshot. Its SnapshotID names it: use it as a
// template to create sandboxes from it. TemplateID is what it stands on (a
// template or another snapshot), Kind "files" or "memory" (files, and
// processes with their memory).
type SnapshotInfo = wire.Snapshot

// CreateSnapshot snapshots a running sandbox; name may be empty. The
// sandbox is frozen only while its state is copied.
func (c *Client) CreateSnapshot(ctx context.Context, sandboxID, name string) (*SnapshotInfo, error) {
	if sandboxID == "" {
		return nil, errNoID
	}
	body := wire.SnapshotRequest{Name: name}
	out := &SnapshotInfo{}
	if _, err := c.do(ctx, http.MethodPost, "/sandboxes/"+escape(sandboxID)+"/snapshots", nil, body, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ListSnapshots returns the snapshots, of one sandbox when sandboxID is not
// empty, oldest first.
func (c *Client) ListSnapshots(ctx context.Context, sandboxID string) ([]SnapshotInfo, error) {
	q := url.Values{}
	if sandboxID != "" {
		q.Set("sandboxID", sandboxID)
	}
	all := []SnapshotInfo{}
	seen := map[string]bool{}
	for {
		var page []SnapshotInfo
		resp, err := c.do(ctx, http.MethodGet, "/snapshots", q, nil, &page)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		next := strings.TrimSpace(resp.header.Get("X-Next-Token"))
		if next == "" || len(page) == 0 || seen[next] {
			return all, nil
		}
		seen[next] = true
		q.Set("nextToken", next)
	}
}

// DeleteSnapshot deletes a snapshot by id or name. One that sandboxes use
// fails with [ErrConflict].
func (c *Client) DeleteSnapshot(ctx context.Context, id string) error {
	if id == "" {
		return errNoID
	}
	_, err := c.do(ctx, http.MethodDelete, "/templates/"+escape(id), nil, nil, nil)
	return err
}

// ForkResult is one copy of a fork: a sandbox, or why it failed to start.
type ForkResult struct {
	Sandbox *Sandbox
	Err     error
}

// Fork makes n copies of a running sandbox that continue from its current
// state independently; timeout is each copy's time to live, as in
// CreateOptions. The request fails as a whole (bad n, unknown sandbox) or
// reports each copy.
func (c *Client) Fork(ctx context.Context, id string, n int, timeout time.Duration) ([]ForkResult, error) {
	if id == "" {
		return nil, errNoID
	}
	body := wire.ForkRequest{Count: &n, Timeout: seconds(timeout)}
	var raw []wire.ForkResult
	if _, err := c.do(ctx, http.MethodPost, "/sandboxes/"+escape(id)+"/fork", nil, body, &raw); err != nil {
		return nil, err
	}
	out := make([]ForkResult, len(raw))
	for i, r := range raw {
		switch {
		case r.Error != nil:
			out[i].Err = &APIError{StatusCode: r.Error.Code, Message: r.Error.Message}
		case r.Sandbox != nil:
			out[i].Sandbox = c.handle(*r.Sandbox)
		default:
			out[i].Err = fmt.Errorf("sbx: fork copy %s: empty result", strconv.Itoa(i))
		}
	}
	return out, nil
}

// CreateSnapshot snapshots the sandbox; see [Client.CreateSnapshot].
func (s *Sandbox) CreateSnapshot(ctx context.Context, name string) (*SnapshotInfo, error) {
	return s.c.CreateSnapshot(ctx, s.ID, name)
}

// Fork makes n copies of the sandbox; see [Client.Fork].
func (s *Sandbox) Fork(ctx context.Context, n int, timeout time.Duration) ([]ForkResult, error) {
	return s.c.Fork(ctx, s.ID, n, timeout)
}
