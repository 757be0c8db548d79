package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// Built-in templates: the ones sbx makes itself from Debian's packages, on
// first use or with `sbx template build NAME`. Each is a debootstrap of the
// base suite with the base template's packages plus its own, configured by
// the base setup and then by its own.

// CodeInterpreterName is the template E2B's code interpreter SDKs
// (@e2b/code-interpreter, e2b-code-interpreter) create sandboxes from by
// default.
const CodeInterpreterName = "code-interpreter-v1"

// CodeInterpreterPort is the port the code interpreter's server listens on
// in a sandbox: the one the SDKs send /execute and /contexts to.
const CodeInterpreterPort = 49999

// agentPath is where every sandbox has the sbx-agent binary (the sandbox
// package's AgentMountPath; this package sits below it). The code
// interpreter's server is a subcommand of the agent, so it is always the
// server of the sbx that runs the sandbox, whatever sbx built the template.
const agentPath = "/.sbx/sbx-agent"

// codeInterpreterPackages are the code interpreter template's packages on
// top of the base template's: the IPython kernel and the Jupyter client
// pieces, the data-science stack E2B's template ships, the fonts plots
// need, and R with its Jupyter kernel (IRkernel) for R contexts.
const codeInterpreterPackages = "python3-ipykernel python3-jupyter-client python3-matplotlib-inline " +
	"python3-numpy python3-pandas python3-matplotlib python3-scipy python3-sklearn python3-seaborn " +
	"python3-pil python3-requests python3-openpyxl fonts-dejavu-core " +
	"r-base-core r-cran-irkernel"

// codeInterpreterSetup runs inside the rootfs after baseSetup. Matplotlib
// builds its font cache on first import, which takes seconds; doing it here
// keeps it out of the first plot of every sandbox.
const codeInterpreterSetup = `set -eu
runuser -u user -- env HOME=/home/user MPLBACKEND=Agg python3 -c 'import matplotlib.pyplot'
`

// builtinSpec describes how a built-in template is made.
type builtinSpec struct {
	name string
	// late are installed with apt after debootstrap (see lateIncludes).
	late []string
	// setup runs in the rootfs (chroot, as root) after baseSetup.
	setup    string
	defaults Defaults
	startCmd []string
	// readyPort is the port a create waits for.
	readyPort int
	workdir   string
}

func baseSpec() builtinSpec {
	return builtinSpec{name: BaseName, late: strings.Split(lateIncludes, " "), defaults: BaseDefaults}
}

func codeInterpreterSpec() builtinSpec {
	return builtinSpec{
		name:      CodeInterpreterName,
		late:      strings.Fields(lateIncludes + " " + codeInterpreterPackages),
		setup:     codeInterpreterSetup,
		defaults:  Defaults{User: "user"},
		startCmd:  []string{agentPath, "code-interpreter", "-listen", fmt.Sprintf(":%d", CodeInterpreterPort)},
		readyPort: CodeInterpreterPort,
		workdir:   "/home/user",
	}
}

// builtin returns the spec of built-in template name.
func builtin(name string) (builtinSpec, bool) {
	switch name {
	case BaseName:
		return baseSpec(), true
	case CodeInterpreterName:
		return codeInterpreterSpec(), true
	}
	return builtinSpec{}, false
}

// Builtins lists the names of the templates sbx builds itself.
func Builtins() []string { return []string{BaseName, CodeInterpreterName} }

// IsBuiltin reports whether sbx builds template name itself (see
// [Store.EnsureBuiltin]).
func IsBuiltin(name string) bool {
	_, ok := builtin(name)
	return ok
}

// EnsureBuiltin builds built-in template name unless it exists, streaming a
// line per build stage to progress (which may be nil). A name that is not
// built in is errdefs.ErrNotFound. The base template is [Store.EnsureBase].
//
// Other built-in templates take minutes to build (a few hundred MiB of
// packages), so a build does not hold the store's lock all along, which
// would stop imports, settings and removals of every other template for as
// long: builds of one template are serialised by a flock on
// dir/.lock-NAME, build under dir/.builtin-NAME-* (which only such a build
// sweeps), and take the store's lock only to install the result.
func (s *Store) EnsureBuiltin(ctx context.Context, name string, progress io.Writer) error {
	spec, ok := builtin(name)
	if !ok {
		return errdefs.New(errdefs.ErrNotFound, "template %q is not a built-in template (built-in: %s)", name, strings.Join(Builtins(), ", "))
	}
	if name == BaseName {
		return s.EnsureBase(ctx, progress)
	}
	if progress == nil {
		progress = io.Discard
	}
	if _, err := s.Get(name); err == nil {
		return nil
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	if ok, err := s.fetchInstead(ctx, name, progress); ok || err != nil {
		return err
	}
	built := false
	defer func() { // registered first, so it runs after the unlocks below
		if built {
			s.publishMade(ctx, name)
		}
	}()
	unlock, err := s.lockNamed(ctx, lockFile+"-"+name)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := s.Get(name); err == nil {
		return nil // built by whoever held the lock before us
	}
	prefix := ".builtin-" + name + "-"
	if old, _ := filepath.Glob(filepath.Join(s.dir, prefix+"*")); len(old) > 0 {
		for _, o := range old {
			s.logger.Info("removing leftover", "path", filepath.Base(o))
			os.RemoveAll(o)
		}
	}

	start := time.Now()
	s.logger.Info("building template", "template", name, "mirror", s.Mirror)
	fmt.Fprintf(progress, "building template %s\n", name)
	build := filepath.Join(s.dir, prefix+randSuffix())
	if err := os.Mkdir(build, 0o755); err != nil {
		return fmt.Errorf("build template %q: %w", name, err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(build)
		}
	}()
	info, err := s.debootstrap(ctx, spec, build, progress)
	if err != nil {
		return err
	}
	unlockStore, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlockStore()
	if _, err := s.Get(name); err == nil {
		return nil // imported under this name meanwhile: keep that one
	}
	if err := s.install(build, info); err != nil {
		return err
	}
	done, built = true, true
	fmt.Fprintf(progress, "template %s ready (%s)\n", name, time.Since(start).Round(time.Second))
	s.logger.Info("template built", "template", name, "duration", time.Since(start))
	return nil
}

// debootstrap makes spec's root filesystem in build/rootfs and returns the
// template's Info (to install from build).
func (s *Store) debootstrap(ctx context.Context, spec builtinSpec, build string, progress io.Writer) (Info, error) {
	rootfs := filepath.Join(build, rootfsDir)
	cache := filepath.Join(s.dir, cacheDir)
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return Info{}, fmt.Errorf("build template %q: %w", spec.name, err)
	}

	fmt.Fprintf(progress, "debootstrap %s from %s\n", baseSuite, s.Mirror)
	if err := run(ctx, progress, "debootstrap",
		"--variant=minbase",
		"--include="+baseIncludes,
		"--cache-dir="+cache,
		baseSuite, rootfs, s.Mirror); err != nil {
		// debootstrap's own log says what failed (a maintainer script,
		// usually) and goes away with the build directory.
		return Info{}, fmt.Errorf("build template %q: %w%s", spec.name, err, fileTail(filepath.Join(rootfs, "debootstrap", "debootstrap.log"), 15))
	}
	late := strings.Join(spec.late, " ")
	fmt.Fprintf(progress, "apt-get install %s\n", late)
	if err := run(ctx, progress, "sh", "-c", aptInstall, "sh", rootfs, filepath.Join(cache, "apt"), late); err != nil {
		return Info{}, fmt.Errorf("build template %q: install %s: %w", spec.name, late, err)
	}
	fmt.Fprintf(progress, "configuring %s template\n", spec.name)
	if err := run(ctx, progress, "chroot", rootfs, "/bin/sh", "-c", baseSetup); err != nil {
		return Info{}, fmt.Errorf("build template %q: configure: %w", spec.name, err)
	}
	if spec.setup != "" {
		if err := run(ctx, progress, "chroot", rootfs, "/bin/sh", "-c", spec.setup); err != nil {
			return Info{}, fmt.Errorf("build template %q: configure: %w", spec.name, err)
		}
	}
	if s.IDShift != 0 {
		fmt.Fprintln(progress, "re-owning files for the sandbox id range")
		if err := shiftTree(ctx, rootfs, 0, s.IDShift); err != nil {
			return Info{}, fmt.Errorf("build template %q: %w", spec.name, err)
		}
	}
	return Info{Name: spec.name, Created: time.Now().UTC(), Defaults: spec.defaults, IDShift: s.IDShift,
		StartCmd: spec.startCmd, ReadyPort: spec.readyPort, Workdir: spec.workdir,
		Source: spec.source()}, nil
}

// source is the Source of a template built from spec. It names everything
// the build depends on (packages, setup), so that a template built by an
// sbx whose spec differs has another Source: see [Store.BuiltinStale].
func (spec builtinSpec) source() string {
	src := "debootstrap " + baseSuite + " (" + baseIncludes + "," + strings.Join(spec.late, ",") + ")"
	h := sha256.Sum256([]byte(baseSetup + "\x00" + spec.setup))
	return src + " setup " + hex.EncodeToString(h[:6])
}

// BuiltinStale reports whether built-in template name (other than base, whose
// build is [Store.EnsureBase]'s) is installed but was built from another spec
// than this sbx's: other packages or setup, as when a new sbx adds packages
// to it. Such a template is to be removed (once no sandbox uses it) so that
// its next use builds it again. A template that is not installed, or one
// imported under the name (not built by sbx), is not stale.
func (s *Store) BuiltinStale(name string) (bool, error) {
	spec, ok := builtin(name)
	if !ok || name == BaseName {
		return false, nil
	}
	info, err := s.Get(name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !strings.HasPrefix(info.Source, "debootstrap ") {
		return false, nil
	}
	return info.Source != spec.source(), nil
}

// lockNamed takes an exclusive flock on dir/name, waiting for another
// process (or Store) to release it, until ctx is done. It returns the
// function that releases it (closing the file releases the flock).
func (s *Store) lockNamed(ctx context.Context, name string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("template store lock: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("template store lock: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("template store lock: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
