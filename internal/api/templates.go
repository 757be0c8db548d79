package api

import (
	"context"
	"errors"
	"io/fs"
	"math"
	"net/http"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/template"
	"github.com/sbxdev/sbx/wire"
)

// templateSettings turns a request's settings into the template
// store's.
func templateSettings(t wire.TemplateSettings) (template.Settings, error) {
	st := template.Settings{
		ReadyCmd: t.ReadyCmd, ReadyPort: t.ReadyPort, ReadyTimeoutSeconds: t.ReadyTimeout,
		Workdir: t.Workdir, User: t.User, CPUs: t.CPUCount, MemoryMB: t.MemoryMB,
	}
	if t.StartCmd != nil {
		argv := template.StartShell(*t.StartCmd)
		st.StartCmd = &argv
	}
	if t.Env != nil {
		if err := validateEnvMap(t.Env); err != nil {
			return st, err
		}
		env := make([]string, 0, len(t.Env))
		for k, v := range t.Env {
			env = append(env, k+"="+v)
		}
		sort.Strings(env) // a stable meta.json and inspect output
		st.Env = &env
	}
	// Apply checks the rest; run it on an empty Info to fail before any
	// work is done.
	_, err := st.Apply(template.Info{})
	return st, err
}

func validateEnvMap(m map[string]string) error {
	for k := range m {
		for i := 0; i < len(k); i++ {
			if k[i] == '=' || k[i] == 0 {
				return errdefs.New(errdefs.ErrInvalidArgument, "env: key %q must not contain '=' or NUL", k)
			}
		}
		if k == "" {
			return errdefs.New(errdefs.ErrInvalidArgument, "env: empty key")
		}
	}
	return nil
}

// requestedLimits checks a create request's cpuCount and memoryMB (nil:
// the defaults). The server maxima are checked by the Manager, which also
// applies them to template defaults.
func requestedLimits(cpus *float64, mem *int64) (float64, int64, error) {
	var c float64
	var m int64
	if cpus != nil {
		if *cpus <= 0 || math.IsNaN(*cpus) || math.IsInf(*cpus, 0) {
			return 0, 0, errdefs.New(errdefs.ErrInvalidArgument, "cpuCount must be a positive number of cores")
		}
		c = *cpus
	}
	if mem != nil {
		if *mem <= 0 {
			return 0, 0, errdefs.New(errdefs.ErrInvalidArgument, "memoryMB must be a positive number of MiB")
		}
		m = *mem
	}
	return c, m, nil
}

// templateGetter is what inspecting and changing templates need of the
// template store (the server's *template.Store has it).
type templateGetter interface {
	Get(name string) (template.Info, error)
	Set(ctx context.Context, name string, st template.Settings) (template.Info, error)
}

func (s *Server) getter() (templateGetter, error) {
	g, ok := s.templates.(templateGetter)
	if !ok {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "this server's template store cannot be inspected")
	}
	return g, nil
}

func (s *Server) inspectTemplate(w http.ResponseWriter, r *http.Request) error {
	g, err := s.getter()
	if err != nil {
		return err
	}
	info, err := g.Get(r.PathValue("name"))
	if err != nil {
		return err
	}
	out, err := s.templateDetail(r.Context(), info)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) templateDetail(ctx context.Context, info template.Info) (wire.TemplateDetail, error) {
	n, err := s.mgr.Templates().Users(ctx, info.Name)
	if err != nil {
		return wire.TemplateDetail{}, err
	}
	var disk int64
	for _, l := range info.LayerPaths { // a built template's layers and its base's rootfs
		n, err := diskUsage(ctx, l)
		if err != nil {
			return wire.TemplateDetail{}, err
		}
		disk += n
	}
	cpus, mem := s.mgr.Templates().EffectiveLimits(info.Defaults.CPUs, info.Defaults.MemoryMB)
	d := wire.TemplateDetail{
		TemplateID: info.Name, CreatedAt: info.Created, Source: info.Source,
		SizeBytes: info.SizeBytes, DiskBytes: disk, Layers: []wire.TemplateLayer{}, BuildLayers: info.Stack, Base: info.Base,
		User: info.Defaults.User, Env: info.Env, Workdir: info.Workdir, StartCmd: info.StartCmd,
		ReadyCmd: info.ReadyCmd, ReadyPort: info.ReadyPort, ReadyTimeout: info.ReadyTimeoutSeconds,
		CPUCount: cpus, MemoryMB: mem, CPUCountSet: info.Defaults.CPUs != 0, MemoryMBSet: info.Defaults.MemoryMB != 0,
		Sandboxes: n,
	}
	if d.User == "" {
		d.User = "user"
	}
	if d.Env == nil {
		d.Env = []string{}
	}
	if d.StartCmd == nil {
		d.StartCmd = []string{}
	}
	for _, l := range info.Layers {
		d.Layers = append(d.Layers, wire.TemplateLayer{Digest: l.Digest, SizeBytes: l.SizeBytes})
	}
	return d, nil
}

// setTemplate changes a template's settings (admin: they decide what runs
// in every sandbox made from it).
func (s *Server) setTemplate(w http.ResponseWriter, r *http.Request) error {
	g, err := s.getter()
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := template.ValidateName(name); err != nil {
		return err
	}
	var req wire.TemplateSettings
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	st, err := templateSettings(req)
	if err != nil {
		return err
	}
	info, err := g.Set(r.Context(), name, st)
	if err != nil {
		return err
	}
	out, err := s.templateDetail(r.Context(), info)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// diskUsage sums the blocks allocated to the files under root, counting
// each hard-linked inode once.
func diskUsage(ctx context.Context, root string) (int64, error) {
	type ino struct{ dev, ino uint64 }
	seen := map[ino]bool{}
	var total int64
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrPermission) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return nil // vanished meanwhile
		}
		if st.Nlink > 1 && !d.IsDir() {
			k := ino{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += st.Blocks * 512
		return nil
	})
	if err != nil {
		return 0, errdefs.Wrap(errdefs.ErrUnavailable, err, "template size could not be read")
	}
	return total, nil
}
