package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	pb "github.com/sbxdev/sbx/gen/process"
	"github.com/sbxdev/sbx/internal/errdefs"
)

// defaultPath is the PATH of every process unless the request or the
// configuration sets another.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// spawnSpec is everything needed to fork a process, resolved and checked
// before anything is forked so that bad requests fail with a clear class.
type spawnSpec struct {
	path  string   // resolved executable
	argv  []string // argv[0] is the command as requested
	env   []string
	dir   string
	cred  *syscall.Credential
	pty   *pb.PTY // nil: pipes
	stdin bool    // keep a stdin pipe (ignored with a PTY: input goes to the terminal)
}

// resolve turns a StartRequest into a spawnSpec for user u.
func (a *Agent) resolve(req *pb.StartRequest, u *account) (*spawnSpec, error) {
	cfg := req.GetProcess()
	if cfg == nil || cfg.GetCmd() == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "process.cmd is required")
	}
	env := a.environ(u, cfg.GetEnvs(), req.GetPty() != nil)

	dir, err := workDir(u, cfg.Cwd, a.config().DefaultWorkdir)
	if err != nil {
		return nil, err
	}
	path, err := lookPath(cfg.GetCmd(), envValue(env, "PATH"), dir)
	if err != nil {
		return nil, err
	}
	groups := append([]uint32(nil), u.groups...)
	return &spawnSpec{
		path:  path,
		argv:  append([]string{cfg.GetCmd()}, cfg.GetArgs()...),
		env:   env,
		dir:   dir,
		cred:  &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: groups},
		pty:   req.GetPty(),
		stdin: req.GetStdin(),
	}, nil
}

// environ builds a process environment: the defaults envd sets, then the
// sandbox's configured variables, then the request's. The agent's own
// environment is never inherited: it may have carried the access token.
func (a *Agent) environ(u *account, reqEnv map[string]string, tty bool) []string {
	cfg := a.config()
	m := map[string]string{
		"PATH":            defaultPath,
		"HOME":            u.home,
		"USER":            u.name,
		"LOGNAME":         u.name,
		"SHELL":           u.shell,
		"E2B_SANDBOX":     "true",
		"E2B_SANDBOX_ID":  cfg.SandboxID,
		"E2B_TEMPLATE_ID": cfg.TemplateID,
	}
	if u.shell == "" {
		m["SHELL"] = "/bin/sh"
	}
	for k, v := range cfg.EnvVars {
		m[k] = v
	}
	for k, v := range reqEnv {
		m[k] = v
	}
	if _, ok := m["TERM"]; tty && !ok {
		m["TERM"] = "xterm-256color"
	}
	env := make([]string, 0, len(m))
	for k, v := range m {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
			continue
		}
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			return v
		}
	}
	return ""
}

// workDir returns the directory to start in: the requested one (relative
// paths are taken from the user's home), else the sandbox's default working
// directory (the template's) if it is a directory, else the home if it
// exists, else /.
func workDir(u *account, cwd *string, def string) (string, error) {
	if cwd == nil || *cwd == "" {
		if def != "" && filepath.IsAbs(def) {
			if fi, err := os.Stat(def); err == nil && fi.IsDir() {
				return def, nil
			}
		}
		if fi, err := os.Stat(u.home); err == nil && fi.IsDir() {
			return u.home, nil
		}
		return "/", nil
	}
	dir := *cwd
	if dir == "~" || strings.HasPrefix(dir, "~/") {
		dir = filepath.Join(u.home, dir[1:])
	} else if !filepath.IsAbs(dir) {
		dir = filepath.Join(u.home, dir)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", errdefs.Wrap(errdefs.ErrInvalidArgument, err, "working directory %q does not exist", *cwd)
	}
	if !fi.IsDir() {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "working directory %q is not a directory", *cwd)
	}
	return dir, nil
}

// lookPath finds cmd as a shell would: a name with a slash is taken as a
// path (relative to dir), anything else is searched in PATH.
func lookPath(cmd, pathEnv, dir string) (string, error) {
	if strings.Contains(cmd, "/") {
		p := cmd
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := checkExecutable(p); err != nil {
			return "", execError(cmd, err)
		}
		return p, nil
	}
	var firstErr error
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		p := filepath.Join(d, cmd)
		err := checkExecutable(p)
		if err == nil {
			return p, nil
		}
		if firstErr == nil && !errors.Is(err, fs.ErrNotExist) {
			firstErr = err
		}
	}
	if firstErr != nil {
		return "", execError(cmd, firstErr)
	}
	return "", errdefs.New(errdefs.ErrNotFound, "executable file %q not found in $PATH", cmd)
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%s: %w", p, syscall.EISDIR)
	}
	if fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s: %w", p, fs.ErrPermission)
	}
	return nil
}

// execError classifies a failure to find or execute cmd.
func execError(cmd string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errdefs.Wrap(errdefs.ErrNotFound, err, "executable file %q not found", cmd)
	case errors.Is(err, fs.ErrPermission):
		return errdefs.Wrap(errdefs.ErrPermissionDenied, err, "permission denied executing %q", cmd)
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.ENOMEM):
		// The sandbox is at its pids or memory limit (a fork bomb, say):
		// the request was fine, the sandbox cannot take more right now.
		return errdefs.Wrap(errdefs.ErrUnavailable, err, "cannot start %q: the sandbox is at its process or memory limit", cmd)
	default:
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "cannot execute %q", cmd)
	}
}
