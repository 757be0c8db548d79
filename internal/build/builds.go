package build

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/template"
)

// Build states.
const (
	StatusWaiting  = "waiting"  // created, steps not given yet (E2B's two-call flow)
	StatusBuilding = "building" // running
	StatusReady    = "ready"    // the template is in place
	StatusError    = "error"    // failed; nothing was installed
)

// Log bounds: a build keeps at most this many lines and bytes of output
// in memory; later output is dropped (step lines and errors are kept).
const (
	maxEvents     = 100_000
	maxEventBytes = 32 << 20
)

// How long finished builds stay visible, and how many.
const (
	keepFinished = time.Hour
	maxFinished  = 200
)

// Build is one build, running or finished. Its methods are safe for
// concurrent use.
type Build struct {
	// ID is the build's id (a UUID, as E2B's are).
	ID string
	// Template is the template it makes: a name or a "name:tag"
	// reference, canonical (see template.Ref).
	Template string
	// Tags are the further tags of Template's name it gets when it is
	// done.
	Tags []string
	// Created is when the build was made.
	Created time.Time

	token    string // authorises E2B's file uploads for this build
	cpus     float64
	memoryMB int64
	dir      string // work directory (contexts), removed at the end

	mu       sync.Mutex
	status   string
	err      error
	finished time.Time
	events   []Event
	bytes    int
	dropped  int
	changed  chan struct{} // closed (and replaced) on every change
}

// Name is the name of the template the build makes, without a tag.
func (b *Build) Name() string {
	name, _, _ := strings.Cut(b.Template, ":")
	return name
}

// Snapshot is a build's state.
type Snapshot struct {
	Status   string
	Err      error
	Finished time.Time
	// Events are the log lines from the offset asked for.
	Events []Event
	// Total is the number of log lines so far.
	Total int
}

// Snapshot returns the build's state and its log lines from offset on.
func (b *Build) Snapshot(offset int) Snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := Snapshot{Status: b.status, Err: b.err, Finished: b.finished, Total: len(b.events)}
	if offset < 0 {
		offset = 0
	}
	if offset < len(b.events) {
		s.Events = append([]Event(nil), b.events[offset:]...)
	}
	return s
}

// Wait blocks until the build has more than offset log lines or has
// finished, or ctx is done.
func (b *Build) Wait(ctx context.Context, offset int) {
	b.mu.Lock()
	if len(b.events) > offset || b.status == StatusReady || b.status == StatusError {
		b.mu.Unlock()
		return
	}
	ch := b.changed
	b.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// CheckToken reports whether token authorises uploads for the build, in
// constant time.
func (b *Build) CheckToken(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(b.token)) == 1
}

// Token is the build's upload token.
func (b *Build) Token() string { return b.token }

// Dir is the build's work directory.
func (b *Build) Dir() string { return b.dir }

// Resources are the CPU and memory defaults asked for when the build was
// made.
func (b *Build) Resources() (float64, int64) { return b.cpus, b.memoryMB }

func (b *Build) add(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e.Kind == "output" && (len(b.events) >= maxEvents || b.bytes >= maxEventBytes) {
		if b.dropped == 0 {
			b.events = append(b.events, Event{Time: e.Time, Level: "info", Step: e.Step, Kind: "info", Message: "(output truncated: the build log holds at most 100000 lines or 32 MiB)"})
		}
		b.dropped++
		b.notify()
		return
	}
	b.events = append(b.events, e)
	b.bytes += len(e.Message)
	b.notify()
}

func (b *Build) setStatus(s string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.status, b.err = s, err
	if s == StatusReady || s == StatusError {
		b.finished = time.Now().UTC()
	}
	b.notify()
}

func (b *Build) notify() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// Builds keeps the server's builds and runs them in the background. It is
// safe for concurrent use.
type Builds struct {
	b      *Builder
	dir    string
	files  string
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	builds map[string]*Build
	active map[string]string // template name → id of the build making it
}

// NewBuilds returns a Builds running builds with b, keeping work files
// under dir (removed and recreated: nothing there outlives a server) and
// uploaded file archives (E2B's COPY uploads, kept as a cache for a week
// after their last use) under files.
func NewBuilds(b *Builder, dir, files string, log *slog.Logger) (*Builds, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("build dir: %w", err)
	}
	for _, d := range []string{dir, files} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("build dir: %w", err)
		}
	}
	if entries, err := os.ReadDir(files); err == nil {
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && (time.Since(fi.ModTime()) > 7*24*time.Hour || strings.HasPrefix(e.Name(), ".upload-")) {
				os.Remove(filepath.Join(files, e.Name()))
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Builds{b: b, dir: dir, files: files, log: log, ctx: ctx, cancel: cancel, builds: map[string]*Build{}, active: map[string]string{}}, nil
}

// FilePath is where the uploaded file archive with hash is kept.
func (bs *Builds) FilePath(hash string) string { return filepath.Join(bs.files, hash) }

// Builder returns the builder the builds run on.
func (bs *Builds) Builder() *Builder { return bs.b }

// KillLeftovers kills the step sandboxes of builds that an earlier server
// was running when it stopped: those builds are gone.
func (bs *Builds) KillLeftovers(ctx context.Context) error {
	list, err := bs.b.mgr.List(ctx, sandbox.ListFilter{States: []sandbox.State{sandbox.StateRunning, sandbox.StatePaused, sandbox.StateFailed}})
	if err != nil {
		return err
	}
	for _, sb := range list {
		if _, ok := sb.Metadata[MetadataKey]; ok {
			bs.log.Info("killing the sandbox of an interrupted build", "sandbox_id", sb.ID, "build_id", sb.Metadata[MetadataKey])
			if err := bs.b.mgr.Kill(ctx, sb.ID); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				return err
			}
		}
	}
	return nil
}

// New makes a build of template name (a name or a "name:tag" reference)
// that also gets tags (further tags of that name), waiting for its steps.
// A build of the same name already under way is errdefs.ErrConflict.
func (bs *Builds) New(name string, tags []string, cpus float64, memoryMB int64) (*Build, error) {
	name, err := template.CanonicalRef(name)
	if err != nil {
		return nil, err
	}
	if info, err := bs.b.store.Get(name); err == nil && len(info.Stack) == 0 && info.Base == "" {
		return nil, errdefs.New(errdefs.ErrConflict, "template %q exists and was not built from steps; remove it or choose another name", name)
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	bs.prune()
	if id, ok := bs.active[name]; ok {
		if old := bs.builds[id]; old != nil && old.Snapshot(1<<62).Status == StatusBuilding {
			return nil, errdefs.New(errdefs.ErrConflict, "template %q is being built (build %s)", name, id)
		}
	}
	b := &Build{ID: newUUID(), Template: name, Tags: tags, Created: time.Now().UTC(), token: randHex(32), cpus: cpus, memoryMB: memoryMB, status: StatusWaiting, changed: make(chan struct{})}
	b.dir = filepath.Join(bs.dir, b.ID)
	if err := os.Mkdir(b.dir, 0o700); err != nil {
		return nil, fmt.Errorf("build dir: %w", err)
	}
	bs.builds[b.ID] = b
	bs.active[name] = b.ID
	return b, nil
}

// Get returns build id. An unknown id is errdefs.ErrNotFound.
func (bs *Builds) Get(id string) (*Build, error) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	b, ok := bs.builds[id]
	if !ok {
		return nil, errdefs.New(errdefs.ErrNotFound, "build %q not found", id)
	}
	return b, nil
}

// Waiting returns the newest build of template name that waits for its
// steps (E2B's file uploads name the template, not the build).
func (bs *Builds) Waiting(name string) (*Build, error) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	var best *Build
	for _, b := range bs.builds {
		if (b.Template == name || b.Name() == name) && b.Snapshot(1<<62).Status == StatusWaiting && (best == nil || b.Created.After(best.Created)) {
			best = b
		}
	}
	if best == nil {
		return nil, errdefs.New(errdefs.ErrNotFound, "no build of template %q is waiting for files; request one first (POST /v3/templates)", name)
	}
	return best, nil
}

// Discard forgets a build that never started.
func (bs *Builds) Discard(b *Build) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if b.Snapshot(1<<62).Status != StatusWaiting {
		return
	}
	delete(bs.builds, b.ID)
	if bs.active[b.Template] == b.ID {
		delete(bs.active, b.Template)
	}
	os.RemoveAll(b.dir)
}

// Start runs spec as build b in the background. spec.ID and spec.Name are
// b's. Checks that need no sandbox run first: their failure is returned
// and the build stays waiting. Unless allowImages, a build from an image
// is errdefs.ErrPermissionDenied.
func (bs *Builds) Start(ctx context.Context, b *Build, spec Spec, allowImages bool) error {
	spec.ID, spec.Name, spec.Tags = b.ID, b.Template, b.Tags
	usesImage, err := bs.b.Check(ctx, spec)
	if err != nil {
		return err
	}
	if usesImage && !allowImages {
		// Threat: FROM an image makes the server fetch from any host a
		// caller names (a request forgery reaching internal services).
		return errdefs.New(errdefs.ErrPermissionDenied, "building from an image (FROM %s) needs an admin API key; plain keys build from templates", firstNonEmpty(spec.From, "an image"))
	}
	b.mu.Lock()
	if b.status != StatusWaiting {
		b.mu.Unlock()
		return errdefs.New(errdefs.ErrConflict, "build %s was started already", b.ID)
	}
	b.status = StatusBuilding
	b.notify()
	b.mu.Unlock()
	bs.wg.Add(1)
	go func() {
		defer bs.wg.Done()
		log := bs.log.With("build_id", b.ID, "template", b.Template)
		log.Info("build started")
		_, err := bs.b.Build(bs.ctx, spec, b.add)
		os.RemoveAll(b.dir)
		if err != nil {
			if bs.ctx.Err() != nil {
				err = errdefs.Wrap(errdefs.ErrUnavailable, err, "the server stopped during the build")
			}
			msg, step, _ := ErrorDetail(err)
			b.add(Event{Time: time.Now().UTC(), Level: "error", Step: step, Kind: "error", Message: "Build failed: " + msg})
			b.setStatus(StatusError, err)
			log.Info("build failed", "err", err)
			return
		}
		b.setStatus(StatusReady, nil)
		log.Info("build finished")
	}()
	return nil
}

// Close cancels running builds and waits for them to clean up.
func (bs *Builds) Close() {
	bs.cancel()
	bs.wg.Wait()
}

// prune forgets finished builds past their time. The caller holds bs.mu.
func (bs *Builds) prune() {
	var done []*Build
	for _, b := range bs.builds {
		s := b.Snapshot(1 << 62)
		switch {
		case s.Status == StatusWaiting && time.Since(b.Created) > keepFinished:
			delete(bs.builds, b.ID)
			os.RemoveAll(b.dir)
		case !s.Finished.IsZero():
			done = append(done, b)
		}
	}
	sort.Slice(done, func(i, j int) bool { return done[i].Created.After(done[j].Created) })
	for i, b := range done {
		if i >= maxFinished || time.Since(b.Snapshot(1<<62).Finished) > keepFinished {
			delete(bs.builds, b.ID)
			if bs.active[b.Template] == b.ID {
				delete(bs.active, b.Template)
			}
		}
	}
}

// ErrorDetail returns the message, step and exit code of a failed build.
func ErrorDetail(err error) (msg string, step, exitCode int) {
	if err == nil {
		return "", 0, 0
	}
	var se *StepError
	if errors.As(err, &se) {
		return se.Message(), se.Step, se.ExitCode
	}
	return errdefs.Message(err), 0, 0
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
