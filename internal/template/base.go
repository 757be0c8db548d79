package template

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// Base template contents and defaults.
const (
	baseSuite = "bookworm"
	// npm is not among them: debootstrap's dependency resolver does not
	// follow virtual packages, and npm's node-* dependency tree then fails
	// to configure. apt installs it afterwards (lateIncludes), with what
	// makes the base E2B's: python beside python3 (python-is-python3), a
	// sudo the default user may use, and the box's own hostname resolving
	// (libnss-myhostname; sudo looks it up).
	baseIncludes = "python3,nodejs,git,curl,ca-certificates,procps"
	lateIncludes = "npm python-is-python3 sudo libnss-myhostname"
	// DefaultMirror is used when this host's apt names no Debian mirror
	// for the base suite (for example on Ubuntu).
	DefaultMirror = "http://deb.debian.org/debian"
)

// BaseDefaults are the runtime defaults recorded in the base template.
// CPU and memory are left to the server's defaults (sbx serve --cpus,
// --memory-mb).
var BaseDefaults = Defaults{User: "user"}

// aptInstall installs packages ($3) into the fresh rootfs ($1) with the
// rootfs's own apt and the package lists debootstrap left there. The store's
// cache ($2) stands in for apt's archive cache so rebuilds download nothing.
// It runs in a private mount namespace (see run), so its mounts vanish with
// it even if it fails halfway.
const aptInstall = `set -eu
root=$1 cache=$2
mkdir -p "$cache/partial"
mount --bind "$cache" "$root/var/cache/apt/archives"
mount -t proc proc "$root/proc"
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $3
umount "$root/proc"
umount "$root/var/cache/apt/archives"
`

// baseSetup runs inside the fresh rootfs (chroot, as root) to turn a
// debootstrap tree into the base template.
const baseSetup = `set -eu
# The unprivileged user commands run as by default: uid 1000 like on a
# developer machine, so files written to bind mounts look familiar.
if ! getent passwd user >/dev/null; then
	useradd --uid 1000 --user-group --create-home --home-dir /home/user --shell /bin/bash user
fi
# As E2B's base: user may sudo to anyone without a password. That makes it
# the box's root, whom the API's user "root" is already; neither is the
# host's (see docs/templates.md, "The sandbox's user").
usermod -a -G sudo user
printf 'user ALL=(ALL:ALL) NOPASSWD: ALL\n' >/etc/sudoers.d/user
chmod 0440 /etc/sudoers.d/user
visudo -c -q
# libnss-myhostname's own script adds it to nsswitch.conf; a box must
# resolve its hostname (the runtime sets it) without /etc/hosts naming it.
grep -q '^hosts:.*myhostname' /etc/nsswitch.conf || sed -i 's/^hosts:.*/& myhostname/' /etc/nsswitch.conf
# debootstrap copies the build host's /etc/hosts and /etc/hostname; a
# template must not carry the host's names (the runtime sets the hostname).
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n' >/etc/hosts
: >/etc/hostname
# Nor the build host's resolver: the network layer provides the box's.
: >/etc/resolv.conf
# Package lists and caches are large and stale by the time a sandbox runs.
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log /var/log/bootstrap.log
`

// EnsureBase builds the base template (Debian bookworm minbase with python3,
// node, npm, git and curl, and user "user" with uid 1000) unless it exists.
// It streams a line per build stage to progress (which may be nil).
//
// Builds are serialised by a flock on dir/.lock: a second caller, in this
// process or another, waits for the first and then finds the template built.
// A build takes a minute or two (seconds for the packages when dir/.cache is
// warm) and needs root, debootstrap and the Debian mirror.
func (s *Store) EnsureBase(ctx context.Context, progress io.Writer) error {
	if progress == nil {
		progress = io.Discard
	}
	if _, err := s.Get(BaseName); err == nil {
		return nil
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	if ok, err := s.fetchInstead(ctx, BaseName, progress); ok || err != nil {
		return err
	}
	built := false
	defer func() { // registered first, so it runs after the unlock below
		if built {
			s.publishMade(ctx, BaseName)
		}
	}()
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := s.Get(BaseName); err == nil {
		return nil // built by whoever held the lock before us
	}
	s.sweep()

	start := time.Now()
	s.logger.Info("building template", "template", BaseName, "mirror", s.Mirror)
	build := filepath.Join(s.dir, buildPrefx+BaseName+"-"+randSuffix())
	if err := os.Mkdir(build, 0o755); err != nil {
		return fmt.Errorf("build template %q: %w", BaseName, err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(build)
		}
	}()
	info, err := s.debootstrap(ctx, baseSpec(), build, progress)
	if err != nil {
		return err
	}
	if err := s.install(build, info); err != nil {
		return err
	}
	ok, built = true, true
	fmt.Fprintf(progress, "template %s ready (%s)\n", BaseName, time.Since(start).Round(time.Second))
	s.logger.Info("template built", "template", BaseName, "duration", time.Since(start))
	return nil
}

// run runs a build command, turning its output into progress lines and
// keeping the tail for the error.
//
// The command runs in a private mount namespace: debootstrap mounts /proc,
// /sys and sometimes binds /dev inside the target, and if it dies halfway
// those mounts must not outlive it in the host's namespace, where the
// cleanup's RemoveAll would walk into them.
func run(ctx context.Context, progress io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
		"DEBIAN_FRONTEND=noninteractive",
	}
	// Go makes / recursively private in the child before exec when
	// CLONE_NEWNS is unshared, so nothing propagates back to the host.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	done := make(chan []string)
	go func() { done <- stages(pr, progress) }()
	err := cmd.Wait()
	pw.Close()
	tail := <-done
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.Join(tail, " | "))
	}
	return nil
}

// stages copies a debootstrap-style log to progress as one line per stage:
// debootstrap prints "I: Retrieving foo 1.2" for every package, which it
// folds into "Retrieving packages"; other lines pass through. It returns the
// last lines for error messages.
func stages(r io.Reader, progress io.Writer) []string {
	var tail []string
	lastStage := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		tail = append(tail, line)
		if len(tail) > 8 {
			tail = tail[1:]
		}
		msg := strings.TrimPrefix(line, "I: ")
		verb, _, _ := strings.Cut(msg, " ")
		switch verb {
		case "Retrieving", "Validating", "Extracting", "Unpacking", "Configuring", "Installing":
			if strings.HasSuffix(msg, " packages...") || strings.HasSuffix(msg, " system...") {
				break // stage headers such as "Unpacking required packages..."
			}
			if verb == "Validating" && lastStage == "Retrieving" {
				continue // debootstrap validates each package right after retrieving it
			}
			if verb != lastStage {
				lastStage = verb
				fmt.Fprintf(progress, "  %s packages\n", verb)
			}
			continue
		}
		if !strings.HasPrefix(line, "I: ") && !strings.HasPrefix(line, "W: ") && !strings.HasPrefix(line, "E: ") {
			continue // maintainer-script chatter; kept in the tail only
		}
		lastStage = ""
		if strings.HasPrefix(line, "I: ") {
			line = msg
		}
		fmt.Fprintf(progress, "  %s\n", line)
	}
	io.Copy(io.Discard, r)
	return tail
}

// fileTail returns the last n lines of a file, formatted to end an error
// message, or "" if there is no such file.
func fileTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\n" + path + ":\n" + strings.Join(lines, "\n")
}

// aptMirror returns the Debian mirror this host's apt uses for the base
// suite, so builds go where the host's packages already come from.
func aptMirror() string {
	var files []string
	files = append(files, "/etc/apt/sources.list")
	for _, pat := range []string{"/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"} {
		m, _ := filepath.Glob(pat)
		files = append(files, m...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if m := mirrorIn(string(b), strings.HasSuffix(f, ".sources")); m != "" {
			return m
		}
	}
	return DefaultMirror
}

// mirrorIn finds a "deb" source for suite bookworm in an apt sources file,
// one-line (.list) or deb822 (.sources) format.
func mirrorIn(text string, deb822 bool) string {
	if !deb822 {
		for _, line := range strings.Split(text, "\n") {
			f := strings.Fields(line)
			if len(f) < 3 || f[0] != "deb" {
				continue
			}
			f = f[1:]
			if strings.HasPrefix(f[0], "[") { // [signed-by=...] options
				for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
					f = f[1:]
				}
				if len(f) > 0 {
					f = f[1:]
				}
			}
			if len(f) >= 2 && f[1] == baseSuite {
				return strings.TrimSuffix(f[0], "/")
			}
		}
		return ""
	}
	for _, stanza := range strings.Split(text, "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if ok && !strings.HasPrefix(k, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !strings.Contains(" "+fields["types"]+" ", " deb ") {
			continue
		}
		if e := fields["enabled"]; e == "no" {
			continue
		}
		suites := strings.Fields(fields["suites"])
		uris := strings.Fields(fields["uris"])
		for _, su := range suites {
			if su == baseSuite && len(uris) > 0 {
				return strings.TrimSuffix(uris[0], "/")
			}
		}
	}
	return ""
}
