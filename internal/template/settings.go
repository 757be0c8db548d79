package template

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// Settings change what a template's sandboxes get (see [Info]): each non-nil
// field replaces the template's value; an empty value clears it.
type Settings struct {
	// StartCmd is the start command's argv; empty clears it.
	StartCmd *[]string
	// ReadyCmd is a shell command that must exit 0; "" clears it.
	ReadyCmd *string
	// ReadyPort is a TCP port that must accept connections; 0 clears it.
	ReadyPort *int
	// ReadyTimeoutSeconds bounds the wait for the ready check; 0 is the
	// server's default.
	ReadyTimeoutSeconds *int
	// Env replaces the process environment defaults ("K=V" each).
	Env *[]string
	// Workdir is the default working directory (absolute); "" clears it.
	Workdir *string
	// User is the default user; "" restores "root" for imported and "user"
	// for built templates' callers (the sandbox falls back to "user").
	User *string
	// CPUs (cores) and MemoryMB are the default limits; 0 leaves them to
	// the server.
	CPUs     *float64
	MemoryMB *int64
}

// MaxReadyTimeoutSeconds bounds a template's ready timeout (one hour).
const MaxReadyTimeoutSeconds = 3600

// StartShell turns a shell command line into the argv of a start command,
// as `sbx template import --start-cmd` and E2B's setStartCmd give it:
// /bin/sh -c LINE (every image has /bin/sh; bash is not everywhere).
func StartShell(line string) []string {
	if strings.TrimSpace(line) == "" {
		return nil
	}
	return []string{"/bin/sh", "-c", line}
}

// Apply returns info with s applied, or an errdefs.ErrInvalidArgument error
// naming the first bad value. It does not store anything (see Store.Set).
func (s Settings) Apply(info Info) (Info, error) {
	if s.StartCmd != nil {
		for _, a := range *s.StartCmd {
			if strings.ContainsRune(a, 0) {
				return info, errdefs.New(errdefs.ErrInvalidArgument, "start command: NUL bytes are not allowed")
			}
		}
		if len(*s.StartCmd) > 0 && (*s.StartCmd)[0] == "" {
			return info, errdefs.New(errdefs.ErrInvalidArgument, "start command: the program name is empty")
		}
		info.StartCmd = append([]string(nil), (*s.StartCmd)...)
	}
	if s.ReadyCmd != nil {
		if strings.ContainsRune(*s.ReadyCmd, 0) || len(*s.ReadyCmd) > 64<<10 {
			return info, errdefs.New(errdefs.ErrInvalidArgument, "ready command: at most 64 KiB, no NUL bytes")
		}
		info.ReadyCmd = *s.ReadyCmd
	}
	if s.ReadyPort != nil {
		if p := *s.ReadyPort; p < 0 || p > 65535 {
			return info, errdefs.New(errdefs.ErrInvalidArgument, "ready port must be from 1 to 65535 (0 for none), not %d", p)
		}
		info.ReadyPort = *s.ReadyPort
	}
	if s.ReadyTimeoutSeconds != nil {
		if t := *s.ReadyTimeoutSeconds; t < 0 || t > MaxReadyTimeoutSeconds {
			return info, errdefs.New(errdefs.ErrInvalidArgument, "ready timeout must be from 0 to %d seconds, not %d", MaxReadyTimeoutSeconds, t)
		}
		info.ReadyTimeoutSeconds = *s.ReadyTimeoutSeconds
	}
	if s.Env != nil {
		for _, kv := range *s.Env {
			k, _, ok := strings.Cut(kv, "=")
			if !ok || k == "" || strings.ContainsRune(kv, 0) {
				return info, errdefs.New(errdefs.ErrInvalidArgument, "env: %q is not KEY=value", kv)
			}
		}
		info.Env = append([]string(nil), (*s.Env)...)
	}
	if s.Workdir != nil {
		if w := *s.Workdir; w != "" && (!filepath.IsAbs(w) || strings.ContainsRune(w, 0)) {
			return info, errdefs.New(errdefs.ErrInvalidArgument, "workdir must be an absolute path, not %q", w)
		}
		info.Workdir = *s.Workdir
	}
	if s.User != nil {
		if u := *s.User; strings.ContainsAny(u, ":/\x00") || len(u) > 64 {
			return info, errdefs.New(errdefs.ErrInvalidArgument, "user %q is not a user name", u)
		}
		info.Defaults.User = *s.User
	}
	if s.CPUs != nil {
		if c := *s.CPUs; c < 0 || math.IsNaN(c) || math.IsInf(c, 0) || c > 1024 {
			return info, errdefs.New(errdefs.ErrInvalidArgument, "cpus must be from 0 to 1024, not %v", c)
		}
		info.Defaults.CPUs = *s.CPUs
	}
	if s.MemoryMB != nil {
		if m := *s.MemoryMB; m < 0 || (m > 0 && m < MinMemoryMB) || m > 1<<24 {
			return info, errdefs.New(errdefs.ErrInvalidArgument, "memory must be at least %d MiB (0 for the server's default), not %d", MinMemoryMB, m)
		}
		info.Defaults.MemoryMB = *s.MemoryMB
	}
	return info, nil
}

// MinMemoryMB is the smallest memory limit a template or sandbox may have:
// below it the agent and a shell do not fit.
const MinMemoryMB = 32

// Set applies st to template name's metadata and returns the result. The
// root filesystem is untouched; meta.json is replaced atomically (written
// beside it and renamed), so readers see the old or the new settings,
// never a mix. Sandboxes already running keep what they started with.
func (s *Store) Set(ctx context.Context, name string, st Settings) (Info, error) {
	if err := ValidateName(name); err != nil {
		return Info{}, err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return Info{}, err
	}
	defer unlock()
	info, err := s.Get(name)
	if err != nil {
		return Info{}, err
	}
	info, err = st.Apply(info)
	if err != nil {
		return Info{}, err
	}
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return Info{}, err
	}
	dir := filepath.Join(s.dir, name)
	tmp := filepath.Join(dir, metaFile+".tmp-"+randSuffix())
	if err := writeFileSync(tmp, append(b, '\n')); err != nil {
		os.Remove(tmp)
		return Info{}, fmt.Errorf("template %q: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, metaFile)); err != nil {
		os.Remove(tmp)
		return Info{}, fmt.Errorf("template %q: %w", name, err)
	}
	s.logger.Info("template settings changed", "template", name)
	return s.Get(name)
}
