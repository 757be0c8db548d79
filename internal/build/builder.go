// Package build makes templates from build steps: a Dockerfile's
// instructions (sbx template build) or the steps of E2B's template builder
// (Template().fromTemplate(...).runCmd(...) and Template.build).
//
// # Overview
//
// A build starts from a template or an image (FROM) and runs its steps in
// order. Each step that changes files (RUN, COPY, ADD) runs in a real
// sandbox made by the sandbox Manager from the layers so far: RUN through
// the sandbox's agent, as the current USER with ENV and WORKDIR applied;
// COPY and ADD by writing into the sandbox's root filesystem, resolved
// inside it. The sandbox's upper layer then becomes a new read-only layer
// of the template store (template.Store.CommitLayer), whiteouts included.
// Steps that only change settings (ENV, WORKDIR, USER, ARG, CMD, ...) only
// change what later steps and the template get.
//
// Each layer's id is its cache key: a hash of the parent layer's key, the
// step as written after substitution, the settings it runs with and, for
// COPY and ADD, the content of the files copied. A step whose layer exists
// is not run again (CACHED). A failing step fails the build; the template
// appears only when every step succeeded (template.Store.InstallBuilt).
//
// [Builds] keeps running and finished builds in memory, with their logs,
// for the API.
package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/template"
)

// MetadataKey marks the sandboxes a build runs its steps in (the value is
// the build id).
const MetadataKey = "sbx.build"

// maxLayers bounds a template's stack: a sandbox's overlay mount lists
// every layer in one page of options.
const maxLayers = 40

// Builder runs builds. It is safe for concurrent use.
type Builder struct {
	store *template.Store
	mgr   *sandbox.Manager
	log   *slog.Logger
	// FetchImage fetches an image by reference for FROM
	// (template.ImageFromRegistry by default).
	FetchImage func(ctx context.Context, ref string) (v1.Image, error)
}

// NewBuilder returns a Builder over the template store and the sandbox
// Manager.
func NewBuilder(store *template.Store, mgr *sandbox.Manager, log *slog.Logger) *Builder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Builder{store: store, mgr: mgr, log: log.With("component", "build"),
		FetchImage: func(ctx context.Context, ref string) (v1.Image, error) {
			return template.ImageFromRegistry(ctx, ref, false)
		}}
}

// Spec is one build.
type Spec struct {
	// ID identifies the build (logs, the sandboxes' metadata).
	ID string
	// Name is the template to make (replacing a template built earlier
	// under that name): a name or a "name:tag" reference.
	Name string
	// Tags are more tags of Name's name that the build gets once it is
	// installed (see template.Store.AssignTags).
	Tags []string
	// Instructions are the steps, the first of them FROM unless From is set.
	Instructions []Instruction
	// From, when set, is what the build starts from (a template name or an
	// image reference), as E2B builds give it.
	From string
	// Context is the directory COPY and ADD take sources from.
	Context string
	// BuildArgs set ARG values.
	BuildArgs map[string]string
	// NoCache runs every step even when its layer exists.
	NoCache bool
	// E2B selects E2B's defaults: steps run as the template's default
	// user (not root), in that user's home unless WORKDIR says otherwise;
	// fromImage "e2bdev/base" means the base template.
	E2B bool
	// StartCmd and ReadyCmd, when not nil, replace what the instructions
	// (CMD, ENTRYPOINT) and the parent template say.
	StartCmd *[]string
	ReadyCmd *string
	// CPUs and MemoryMB, when not zero, become the template's defaults.
	CPUs     float64
	MemoryMB int64
}

// Event is one line of a build's log.
type Event struct {
	Time time.Time `json:"timestamp"`
	// Level is "info" or "error".
	Level string `json:"level"`
	// Step is the 1-based number of the instruction the line belongs to,
	// 0 for lines about the whole build.
	Step int `json:"step"`
	// Kind says what the line is: "step" (a step begins), "cached" (its
	// layer was reused), "output" (a line RUN printed), "info", "error".
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// StepError is a step that failed.
type StepError struct {
	// Step is the 1-based instruction number, Instruction its text.
	Step        int
	Instruction string
	// ExitCode is RUN's exit status (-1 when killed by a signal), or 0 for
	// a failure that is not a command's.
	ExitCode int
	Err      error
}

// Message is the error as shown to a client: the step and the cause's
// client-safe message.
func (e *StepError) Message() string {
	if e.Err == nil {
		return fmt.Sprintf("step %d (%s): exit code %d", e.Step, e.Instruction, e.ExitCode)
	}
	return fmt.Sprintf("step %d (%s): %s", e.Step, e.Instruction, errdefs.Message(e.Err))
}

func (e *StepError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("step %d (%s): exit code %d", e.Step, e.Instruction, e.ExitCode)
	}
	return fmt.Sprintf("step %d (%s): %v", e.Step, e.Instruction, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// state is what settings steps change.
type state struct {
	Env      []string          `json:"env"`
	Args     map[string]string `json:"args"`
	User     string            `json:"user"`
	Workdir  string            `json:"workdir"`
	Shell    []string          `json:"shell"`
	userSet  bool
	cmd      []string
	entry    []string
	defUser  string
	preFrom  map[string]string
	declared map[string]bool
}

func (st *state) lookup(name string) (string, bool) {
	for i := len(st.Env) - 1; i >= 0; i-- {
		if k, v, _ := strings.Cut(st.Env[i], "="); k == name {
			return v, true
		}
	}
	v, ok := st.Args[name]
	return v, ok
}

func (st *state) setEnv(k, v string) {
	for i, kv := range st.Env {
		if kk, _, _ := strings.Cut(kv, "="); kk == k {
			st.Env = append(st.Env[:i], st.Env[i+1:]...)
			break
		}
	}
	st.Env = append(st.Env, k+"="+v)
}

// digest is the part of the state that changes what a step does.
func (st *state) digest() string {
	b, _ := json.Marshal(st)
	return string(b)
}

// run is one build in progress.
type run struct {
	b      *Builder
	spec   Spec
	emit   func(Event)
	st     state
	from   string   // template name the step sandboxes are recorded under
	base   string   // Info.Base of the result
	stack  []string // layer ids, uppermost first
	parent string   // cache key of the layer below the next step
	held   []*template.LayerRef
	total  int
	cached int
	ran    int
	cpus   float64
	mem    int64
	dry    bool
	// usesImage is set when FROM names an image.
	usesImage bool
}

// Check runs the build's checks without running anything: the
// instructions, substitutions, FROM, and COPY/ADD sources. Its errors are
// the build's errors of class errdefs.ErrInvalidArgument or
// errdefs.ErrNotFound, found before any sandbox starts.
//
// usesImage reports whether the build starts from an image (which the
// server would fetch from a registry) rather than a template.
func (b *Builder) Check(ctx context.Context, spec Spec) (usesImage bool, err error) {
	r := &run{b: b, spec: spec, emit: func(Event) {}, dry: true}
	defer r.release()
	_, err = r.do(ctx)
	return r.usesImage, err
}

// Build runs spec and installs the template, calling emit with each log
// line (from one goroutine at a time).
func (b *Builder) Build(ctx context.Context, spec Spec, emit func(Event)) (template.Info, error) {
	r := &run{b: b, spec: spec, emit: emit}
	defer r.release()
	start := time.Now()
	info, err := r.do(ctx)
	if err != nil {
		return template.Info{}, err
	}
	r.info(0, "info", fmt.Sprintf("Built template %s: %d steps, %d run, %d cached, %d layers, in %s",
		info.Name, r.total, r.ran, r.cached, len(info.Stack), time.Since(start).Round(time.Millisecond)))
	return info, nil
}

func (r *run) release() {
	for _, h := range r.held {
		h.Release()
	}
}

func (r *run) info(step int, kind, msg string) {
	level := "info"
	if kind == "error" {
		level = "error"
	}
	r.emit(Event{Time: time.Now().UTC(), Level: level, Step: step, Kind: kind, Message: msg})
}

func key(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

func (r *run) do(ctx context.Context) (template.Info, error) {
	ins := r.spec.Instructions
	r.st = state{Args: map[string]string{}, preFrom: map[string]string{}, declared: map[string]bool{}, Shell: []string{"/bin/sh", "-c"}}
	if r.spec.E2B {
		r.st.Shell = []string{"/bin/bash", "-c"} // E2B runs steps with bash
	}
	r.total = len(ins)
	if r.spec.From != "" {
		r.total++
	}
	n := 0
	if r.spec.From != "" {
		n++
		r.info(n, "step", fmt.Sprintf("Step %d/%d : FROM %s", n, r.total, r.spec.From))
		if err := r.startFrom(ctx, r.spec.From, n); err != nil {
			return template.Info{}, err
		}
	}
	sawFrom := r.spec.From != ""
	for _, in := range ins {
		n++
		if err := ctx.Err(); err != nil {
			return template.Info{}, err
		}
		r.info(n, "step", fmt.Sprintf("Step %d/%d : %s", n, r.total, in.String()))
		fail := func(err error) error {
			var se *StepError
			if errors.As(err, &se) {
				return err
			}
			if !isClassed(err) {
				return &StepError{Step: n, Instruction: in.String(), Err: err}
			}
			return &StepError{Step: n, Instruction: in.String(), Err: err}
		}
		if in.Cmd != "FROM" && in.Cmd != "ARG" && !sawFrom {
			return template.Info{}, fail(errdefs.New(errdefs.ErrInvalidArgument, "%s before FROM: a Dockerfile starts with FROM (ARG may precede it)", where(in)))
		}
		switch in.Cmd {
		case "FROM":
			if sawFrom {
				return template.Info{}, fail(errdefs.New(errdefs.ErrInvalidArgument, "%s: a second FROM: multi-stage builds are not supported", where(in)))
			}
			sawFrom = true
			if p := in.Flags["platform"]; p != "" && p != "linux/amd64" {
				return template.Info{}, fail(errdefs.New(errdefs.ErrInvalidArgument, "%s: platform %q: only linux/amd64 is supported", where(in), p))
			}
			ws, err := words(in.Raw, func(k string) (string, bool) { v, ok := r.st.preFrom[k]; return v, ok })
			if err != nil || (len(ws) != 1 && !(len(ws) == 3 && strings.EqualFold(ws[1], "as"))) {
				return template.Info{}, fail(errdefs.New(errdefs.ErrInvalidArgument, "%s: want FROM image-or-template [AS name]", where(in)))
			}
			if err := r.startFrom(ctx, ws[0], n); err != nil {
				return template.Info{}, err
			}
		case "ARG":
			if err := r.arg(in, sawFrom); err != nil {
				return template.Info{}, fail(err)
			}
		case "ENV":
			if err := r.env(in); err != nil {
				return template.Info{}, fail(err)
			}
		case "LABEL":
			if _, err := r.pairs(in, false); err != nil {
				return template.Info{}, fail(err)
			}
		case "EXPOSE", "MAINTAINER":
			if _, err := words(in.Raw, r.st.lookup); err != nil {
				return template.Info{}, fail(errdefs.New(errdefs.ErrInvalidArgument, "%s: %v", where(in), err))
			}
		case "USER":
			u, err := expand(strings.TrimSpace(in.Raw), r.st.lookup)
			if err != nil || u == "" || strings.ContainsAny(u, " \t") {
				return template.Info{}, fail(errdefs.New(errdefs.ErrInvalidArgument, "%s: want USER name-or-uid", where(in)))
			}
			if strings.Contains(u, ":") {
				return template.Info{}, fail(errdefs.New(errdefs.ErrInvalidArgument, "%s: USER with a group is not supported; the user's own groups apply", where(in)))
			}
			r.st.User, r.st.userSet = u, true
		case "WORKDIR":
			w, err := expand(strings.TrimSpace(in.Raw), r.st.lookup)
			if err != nil || w == "" {
				return template.Info{}, fail(errdefs.New(errdefs.ErrInvalidArgument, "%s: want WORKDIR path", where(in)))
			}
			if !path.IsAbs(w) {
				w = path.Join(firstNonEmpty(r.st.Workdir, "/"), w)
			}
			r.st.Workdir = path.Clean(w)
		case "SHELL":
			if len(in.Args) == 0 {
				return template.Info{}, fail(errdefs.New(errdefs.ErrInvalidArgument, "%s: SHELL needs a program", where(in)))
			}
			r.st.Shell = in.Args
		case "CMD", "ENTRYPOINT":
			argv := in.Args
			if !in.JSON {
				argv = nil
				if strings.TrimSpace(in.Raw) != "" {
					argv = append(append([]string(nil), r.st.Shell...), in.Raw)
				}
			}
			if in.Cmd == "CMD" {
				r.st.cmd = argv
			} else {
				r.st.entry = argv
				r.st.cmd = nil // Docker: ENTRYPOINT resets an inherited CMD
			}
		case "RUN", "COPY", "ADD":
			if err := r.layerStep(ctx, in, n); err != nil {
				return template.Info{}, fail(err)
			}
		default:
			return template.Info{}, fail(errdefs.New(errdefs.ErrInvalidArgument, "%s: unknown instruction %q", where(in), in.Cmd))
		}
	}
	if !sawFrom {
		return template.Info{}, errdefs.New(errdefs.ErrInvalidArgument, "no FROM: say what the template starts from")
	}
	if r.dry {
		return template.Info{}, nil
	}
	return r.install(ctx)
}

func isClassed(err error) bool {
	var e *errdefs.Error
	return errors.As(err, &e)
}

func where(in Instruction) string {
	if in.Line > 0 {
		return fmt.Sprintf("line %d: %s", in.Line, in.Cmd)
	}
	return in.Cmd
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func (r *run) arg(in Instruction, afterFrom bool) error {
	ws, err := words(in.Raw, r.st.lookup)
	if err != nil {
		return errdefs.New(errdefs.ErrInvalidArgument, "%s: %v", where(in), err)
	}
	for _, w := range ws {
		name, def, hasDef := strings.Cut(w, "=")
		if name == "" {
			return errdefs.New(errdefs.ErrInvalidArgument, "%s: empty name", where(in))
		}
		v, given := r.spec.BuildArgs[name]
		if !given {
			if !hasDef && !afterFrom {
				def = ""
			}
			if !hasDef && afterFrom {
				// Redeclaring a pre-FROM ARG makes its value visible.
				if pv, ok := r.st.preFrom[name]; ok {
					def = pv
				}
			}
			v = def
		}
		r.st.declared[name] = true
		if afterFrom {
			r.st.Args[name] = v
		} else {
			r.st.preFrom[name] = v
		}
	}
	return nil
}

// pairs parses KEY=VALUE words (and, with legacy, ENV's "KEY VALUE" form).
func (r *run) pairs(in Instruction, legacy bool) ([][2]string, error) {
	ws, err := words(in.Raw, r.st.lookup)
	if err != nil {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s: %v", where(in), err)
	}
	if len(ws) == 0 {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s needs KEY=VALUE", where(in))
	}
	if legacy && !strings.Contains(ws[0], "=") {
		// ENV KEY rest of the line
		k := ws[0]
		rest := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(in.Raw), k))
		vs, err := words(rest, r.st.lookup)
		if err != nil {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s: %v", where(in), err)
		}
		return [][2]string{{k, strings.Join(vs, " ")}}, nil
	}
	var out [][2]string
	for _, w := range ws {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s: %q is not KEY=VALUE", where(in), w)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

func (r *run) env(in Instruction) error {
	if in.Line == 0 && len(in.Args) > 1 || in.JSON {
		// E2B steps give ENV as [k, v, k, v...], values as they are.
		if len(in.Args)%2 != 0 {
			return errdefs.New(errdefs.ErrInvalidArgument, "ENV: want key/value pairs")
		}
		for i := 0; i < len(in.Args); i += 2 {
			if err := validEnvKey(in.Args[i]); err != nil {
				return err
			}
			r.st.setEnv(in.Args[i], in.Args[i+1])
		}
		return nil
	}
	ps, err := r.pairs(in, true)
	if err != nil {
		return err
	}
	for _, p := range ps {
		if err := validEnvKey(p[0]); err != nil {
			return err
		}
		r.st.setEnv(p[0], p[1])
	}
	return nil
}

func validEnvKey(k string) error {
	if k == "" || strings.ContainsAny(k, "=\x00") {
		return errdefs.New(errdefs.ErrInvalidArgument, "ENV: invalid name %q", k)
	}
	return nil
}

// from starts the build from a template or an image.
func (r *run) startFrom(ctx context.Context, ref string, step int) error {
	fail := func(err error) error { return &StepError{Step: step, Instruction: "FROM " + ref, Err: err} }
	if ref == "scratch" {
		return fail(errdefs.New(errdefs.ErrInvalidArgument, "FROM scratch is not supported: start from a template or an image"))
	}
	if r.spec.E2B && (ref == "e2bdev/base" || strings.HasPrefix(ref, "e2bdev/base:")) {
		ref = template.BaseName // sbx's base template is E2B's base image's counterpart
	}
	if template.ValidateName(ref) == nil {
		info, err := r.b.store.Get(ref)
		if err == nil {
			return r.fromTemplate(info)
		}
		if !errors.Is(err, errdefs.ErrNotFound) {
			return fail(err)
		}
		if !strings.ContainsAny(ref, "/:") {
			// Not a template; as an image it would be a Docker Hub
			// name. Say both.
			r.usesImage = true
			if r.dry {
				return nil
			}
			img, ierr := r.b.FetchImage(ctx, ref)
			if ierr != nil {
				return fail(errdefs.Wrap(errdefs.ErrNotFound, ierr, "FROM %s: there is no template %q, and the image %q could not be fetched: %v", ref, ref, ref, errdefs.Message(ierr)))
			}
			return r.fromImage(ctx, ref, img, step)
		}
	}
	r.usesImage = true
	if r.dry {
		return nil
	}
	img, err := r.b.FetchImage(ctx, ref)
	if err != nil {
		return fail(err)
	}
	return r.fromImage(ctx, ref, img, step)
}

func (r *run) fromTemplate(info template.Info) error {
	for _, id := range info.Stack {
		ref, err := r.b.store.PinLayer(id)
		if err != nil {
			return fmt.Errorf("template %q: %w", info.Name, err)
		}
		r.held = append(r.held, ref)
	}
	r.from = info.Name
	r.stack = append([]string(nil), info.Stack...)
	r.base = info.Base
	if len(info.Stack) == 0 && info.Base == "" {
		r.base = info.Name
	}
	r.parent = key(append([]string{"template", info.Name, info.Created.Format(time.RFC3339Nano), info.Base}, info.Stack...)...)
	r.st.Env = append([]string(nil), info.Env...)
	r.st.Workdir = info.Workdir
	r.st.cmd = append([]string(nil), info.StartCmd...)
	r.st.defUser = info.Defaults.User
	r.st.User = "root" // as in Docker; the template's default user stays its default
	if r.spec.E2B {
		r.st.User = firstNonEmpty(info.Defaults.User, "user")
	}
	r.cpus, r.mem = info.Defaults.CPUs, info.Defaults.MemoryMB
	return nil
}

func (r *run) fromImage(ctx context.Context, ref string, img v1.Image, step int) error {
	d, err := img.Digest()
	if err != nil {
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "image %s: %v", ref, err)
	}
	id := key("image", d.String())
	var lr *template.LayerRef
	var cfg template.ImageConfig
	if pinned, err := r.b.store.PinLayer(id); err == nil {
		// The layer exists; its config still comes from the image.
		lr = pinned
		c, err := img.ConfigFile()
		if err != nil {
			return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "image config: %v", err)
		}
		cfg = template.ImageConfig{Env: c.Config.Env, Workdir: c.Config.WorkingDir, User: c.Config.User, Entrypoint: c.Config.Entrypoint, Cmd: c.Config.Cmd}
		r.info(step, "cached", "CACHED image "+d.String())
		r.cached++
	} else {
		r.info(step, "info", "importing image "+ref+" ("+d.String()+")")
		lr, cfg, err = r.b.store.ImportLayer(ctx, id, img, &lineWriter{emit: func(s string) { r.info(step, "output", s) }})
		if err != nil {
			return err
		}
	}
	r.held = append(r.held, lr)
	r.from = r.spec.Name
	r.stack = []string{id}
	r.base = ""
	r.parent = id
	r.st.Env = append([]string(nil), cfg.Env...)
	r.st.Workdir = cfg.Workdir
	r.st.entry = cfg.Entrypoint
	r.st.cmd = cfg.Cmd
	u, _, _ := strings.Cut(cfg.User, ":")
	r.st.User = firstNonEmpty(u, "root")
	r.st.defUser = r.st.User
	return nil
}

// layerStep runs a RUN, COPY or ADD step, or finds its layer.
func (r *run) layerStep(ctx context.Context, in Instruction, step int) error {
	var contentHash string
	var cp *copyPlan
	var argv []string
	user := r.st.User
	switch in.Cmd {
	case "RUN":
		if in.JSON {
			argv = in.Args
		} else {
			argv = append(append([]string(nil), r.st.Shell...), in.Raw)
		}
		if len(argv) == 0 || argv[0] == "" {
			return errdefs.New(errdefs.ErrInvalidArgument, "%s: empty command", where(in))
		}
		if in.User != "" {
			user = in.User
		}
	default:
		var err error
		cp, err = r.planCopy(in)
		if err != nil {
			return err
		}
		contentHash = cp.hash
	}
	if r.dry {
		return nil
	}
	id := key(r.parent, in.Cmd, in.String(), strings.Join(argv, "\x00"), user, r.st.digest(), contentHash)
	if !r.spec.NoCache && !in.force() {
		if lr, err := r.b.store.PinLayer(id); err == nil {
			r.held = append(r.held, lr)
			r.push(lr)
			r.cached++
			r.info(step, "cached", " ---> CACHED")
			return nil
		}
	}
	r.ran++
	lr, err := r.inSandbox(ctx, id, step, func(ctx context.Context, sb *sandbox.Sandbox, rootfs string) error {
		if in.Cmd == "RUN" {
			return r.runCommand(ctx, sb, in, step, argv, user)
		}
		if err := r.doCopy(ctx, rootfs, cp); err != nil && !isClassed(err) && ctx.Err() == nil {
			// What COPY and ADD meet (a file where a directory must be,
			// a bad archive) comes from the Dockerfile and the context.
			// The errors name paths in the sandbox or the context only.
			return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "%s: %v", in.Cmd, err)
		} else if err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.held = append(r.held, lr)
	r.push(lr)
	if len(r.stack) > maxLayers {
		return errdefs.New(errdefs.ErrInvalidArgument, "%s: the template would have more than %d layers; combine steps (one RUN for several commands)", where(in), maxLayers)
	}
	return nil
}

func (in Instruction) force() bool { return in.Force }

func (r *run) push(lr *template.LayerRef) {
	r.parent = lr.ID
	if !lr.Empty {
		r.stack = append([]string{lr.ID}, r.stack...)
	}
}

// layerPaths returns the host paths of the layers so far, uppermost first.
func (r *run) layerPaths() ([]string, error) {
	probe := template.Info{Name: r.spec.Name, Stack: r.stack, Base: r.base}
	paths := make([]string, 0, len(r.stack)+1)
	for _, id := range r.stack {
		lr, err := r.b.store.PinLayer(id) // held already; this finds its path
		if err != nil {
			return nil, err
		}
		paths = append(paths, lr.Path)
		lr.Release()
	}
	if probe.Base != "" {
		info, err := r.b.store.Get(probe.Base)
		if err != nil {
			return nil, err
		}
		paths = append(paths, info.LayerPaths...)
	}
	return paths, nil
}

// inSandbox starts a sandbox from the layers so far, makes sure the
// working directory exists, calls do, and commits what the sandbox
// changed as layer id.
func (r *run) inSandbox(ctx context.Context, id string, step int, do func(ctx context.Context, sb *sandbox.Sandbox, rootfs string) error) (*template.LayerRef, error) {
	layers, err := r.layerPaths()
	if err != nil {
		return nil, err
	}
	sb, err := r.b.mgr.Builds().Create(ctx, sandbox.Template{
		Name:        r.from,
		Layers:      layers,
		DefaultUser: "root",
		CPUs:        firstNonZeroF(r.spec.CPUs, r.cpus),
		MemoryMB:    firstNonZeroI(r.spec.MemoryMB, r.mem),
	}, sandbox.CreateParams{Metadata: map[string]string{MetadataKey: r.spec.ID}})
	if err != nil {
		return nil, fmt.Errorf("start the step's sandbox: %w", err)
	}
	log := r.b.log.With("build_id", r.spec.ID, "sandbox_id", sb.ID, "step", step)
	log.Debug("step sandbox started")
	rootfs := r.b.mgr.Builds().RootfsPath(sb.ID)
	err = func() error {
		if r.st.Workdir != "" && r.st.Workdir != "/" {
			// A missing WORKDIR is made root's, as in Docker; E2B makes
			// it the current user's.
			uid, gid := 0, 0
			if r.spec.E2B {
				var err error
				if uid, gid, err = resolveOwner(rootfs, r.st.User); err != nil {
					return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "user %s: %v", r.st.User, err)
				}
			}
			if err := mkdirIn(rootfs, r.st.Workdir, r.b.store.IDShift, uid, gid); err != nil {
				return fmt.Errorf("WORKDIR %s: %w", r.st.Workdir, err)
			}
		}
		return do(ctx, sb, rootfs)
	}()
	if err != nil {
		if kerr := r.b.mgr.Kill(context.WithoutCancel(ctx), sb.ID); kerr != nil {
			log.Error("kill step sandbox", "err", kerr)
		}
		return nil, err
	}
	var lr *template.LayerRef
	err = r.b.mgr.Builds().Commit(ctx, sb.ID, func(upper string) error {
		var err error
		// .sbx holds the agent's mount point, which the runtime makes in
		// every sandbox.
		lr, err = r.b.store.CommitLayer(ctx, id, upper, []string{".sbx"})
		return err
	})
	if err != nil {
		lr.Release()
		return nil, fmt.Errorf("commit layer: %w", err)
	}
	return lr, nil
}

func firstNonZeroF(vs ...float64) float64 {
	for _, v := range vs {
		if v != 0 {
			return v
		}
	}
	return 0
}

func firstNonZeroI(vs ...int64) int64 {
	for _, v := range vs {
		if v != 0 {
			return v
		}
	}
	return 0
}

func (r *run) install(ctx context.Context) (template.Info, error) {
	startCmd := append(append([]string(nil), r.st.entry...), r.st.cmd...)
	if r.spec.StartCmd != nil {
		startCmd = *r.spec.StartCmd
	}
	user := r.st.defUser
	if r.st.userSet {
		user = r.st.User
	}
	info := template.Info{
		Name:     r.spec.Name,
		BuildID:  r.spec.ID,
		Created:  time.Now().UTC(),
		Stack:    r.stack,
		Base:     r.base,
		Env:      r.st.Env,
		Workdir:  r.st.Workdir,
		StartCmd: startCmd,
		Defaults: template.Defaults{User: user, CPUs: firstNonZeroF(r.spec.CPUs, r.cpus), MemoryMB: firstNonZeroI(r.spec.MemoryMB, r.mem)},
	}
	if r.spec.ReadyCmd != nil {
		info.ReadyCmd = *r.spec.ReadyCmd
	}
	var out template.Info
	// Under the Manager's template guard: a rebuild must not replace a
	// template that sandboxes run from.
	err := r.b.mgr.Templates().Remove(ctx, r.spec.Name, func(ctx context.Context, _ string) error {
		var err error
		out, err = r.b.store.InstallBuilt(ctx, info)
		return err
	})
	refs := []string{out.Name}
	if err == nil && len(r.spec.Tags) > 0 {
		name, _, _ := strings.Cut(out.Name, ":")
		_, err = r.b.store.AssignTags(ctx, out.Name, r.spec.Tags, r.b.mgr.Templates().Remove)
		for _, t := range r.spec.Tags {
			if ref := template.Ref(name, t); ref != out.Name {
				refs = append(refs, ref)
			}
		}
	}
	// Outside the guard, which creates wait on: an upload takes a while.
	// A template that did not reach the object store is still built here.
	if err == nil {
		for _, ref := range refs {
			if perr := r.b.store.Publish(ctx, ref, true); perr != nil {
				r.b.log.Error("publishing template to the object store failed; other servers cannot fetch it", "template", ref, "err", perr)
			}
		}
	}
	return out, err
}

// lineWriter turns written bytes into lines.
type lineWriter struct {
	emit func(string)
	buf  []byte
}

const maxLine = 8 << 10

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) >= maxLine {
				i = maxLine
			} else {
				return len(p), nil
			}
			w.emit(strings.TrimRight(string(w.buf[:i]), "\r"))
			w.buf = w.buf[i:]
			continue
		}
		w.emit(strings.TrimRight(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
}

// Flush emits a last unterminated line.
func (w *lineWriter) Flush() {
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
}

var _ io.Writer = (*lineWriter)(nil)

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
