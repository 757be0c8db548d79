package api

import (
	"context"
	"crypto/subtle"
	"io"
	"net/http"
	"strconv"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/internal/volume"
	"github.com/sbxdev/sbx/wire"
)

func (s *Server) volumes() (*volume.Manager, error) {
	if s.cfg.Volumes == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "this server has no volumes")
	}
	return s.cfg.Volumes, nil
}

func (s *Server) volumeBody(v *store.Volume) wire.VolumeAndToken {
	return wire.VolumeAndToken{VolumeID: v.ID, Name: v.Name, Token: s.cfg.Volumes.Token(v.ID), SizeMB: v.SizeMB}
}

func (s *Server) createVolume(w http.ResponseWriter, r *http.Request) error {
	vols, err := s.volumes()
	if err != nil {
		return err
	}
	var req wire.NewVolume
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	var size int64
	if req.SizeMB != nil {
		if *req.SizeMB <= 0 {
			return errdefs.New(errdefs.ErrInvalidArgument, "sizeMB must be positive")
		}
		size = *req.SizeMB
	}
	v, err := vols.CreateInTeam(r.Context(), teamOf(r), req.Name, size)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s.volumeBody(v))
	return nil
}

func (s *Server) listVolumes(w http.ResponseWriter, r *http.Request) error {
	vols, err := s.volumes()
	if err != nil {
		return err
	}
	all, err := vols.List(r.Context())
	if err != nil {
		return err
	}
	out := make([]wire.Volume, 0, len(all))
	for _, v := range all {
		if ownedVolume(r, v) != nil {
			continue
		}
		out = append(out, wire.Volume{VolumeID: v.ID, Name: v.Name, SizeMB: v.SizeMB})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getVolume(w http.ResponseWriter, r *http.Request) error {
	vols, err := s.volumes()
	if err != nil {
		return err
	}
	v, err := vols.Get(r.Context(), r.PathValue("volumeID"))
	if err != nil {
		return err
	}
	if err := ownedVolume(r, v); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.volumeBody(v))
	return nil
}

func (s *Server) destroyVolume(w http.ResponseWriter, r *http.Request) error {
	vols, err := s.volumes()
	if err != nil {
		return err
	}
	if v, err := vols.Get(r.Context(), r.PathValue("volumeID")); err == nil {
		if err := ownedVolume(r, v); err != nil {
			return err
		}
	}
	if err := vols.Destroy(r.Context(), r.PathValue("volumeID")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// volumeMounts resolves a create's volumeMounts (by volume name).
func (s *Server) volumeMounts(ctx context.Context, team string, in []wire.SandboxVolumeMount) ([]sandbox.VolumeMount, error) {
	if len(in) == 0 {
		return nil, nil
	}
	vols, err := s.volumes()
	if err != nil {
		return nil, err
	}
	out := make([]sandbox.VolumeMount, 0, len(in))
	for _, m := range in {
		if err := sandbox.CheckMountPath(m.Path); err != nil {
			return nil, err
		}
		v, err := vols.ByName(ctx, m.Name)
		if err != nil {
			return nil, err
		}
		if store.TeamOrDefault(v.Team) != team {
			return nil, errdefs.New(errdefs.ErrNotFound, "volume %q not found", m.Name)
		}
		out = append(out, sandbox.VolumeMount{VolumeID: v.ID, Name: v.Name, Path: m.Path})
	}
	return out, nil
}

func (s *Server) sandboxVolumes(ctx context.Context, id string) []wire.SandboxVolumeMount {
	mounts, err := s.mgr.Volumes().Mounts(ctx, id)
	if err != nil {
		return nil
	}
	return volumeMountsBody(mounts)
}

// withVolumeMounts adds each listed sandbox's volume mounts.
func (s *Server) withVolumeMounts(ctx context.Context, list []wire.ListedSandbox) error {
	all, err := s.mgr.Volumes().All(ctx)
	if err != nil {
		return err
	}
	for i := range list {
		list[i].VolumeMounts = volumeMountsBody(all[list[i].SandboxID])
	}
	return nil
}

func volumeMountsBody(mounts []sandbox.VolumeMount) []wire.SandboxVolumeMount {
	if len(mounts) == 0 {
		return nil
	}
	out := make([]wire.SandboxVolumeMount, 0, len(mounts))
	for _, m := range mounts {
		out = append(out, wire.SandboxVolumeMount{Name: m.Name, Path: m.Path})
	}
	return out
}

// volumeAuth requires the volume's own token (Authorization: Bearer) on
// the volume-content routes: they open one volume, with no API key and
// no sandbox.
func (s *Server) volumeAuth(h handlerFunc) http.Handler {
	return s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		if !s.ready.Load() {
			return errdefs.New(errdefs.ErrUnavailable, "sbx is starting")
		}
		vols, err := s.volumes()
		if err != nil {
			return err
		}
		a := r.Header.Get("Authorization")
		if len(a) <= 7 || subtle.ConstantTimeCompare([]byte(a[:7]), []byte("Bearer ")) != 1 {
			return errdefs.New(errdefs.ErrUnauthenticated, "missing volume token: set Authorization: Bearer <the volume's token>")
		}
		if !vols.Verify(r.PathValue("volumeID"), a[7:]) {
			return errdefs.New(errdefs.ErrUnauthenticated, "invalid volume token")
		}
		return h(w, r)
	})
}

// owner parses the uid, gid and mode query parameters.
func owner(r *http.Request) (volume.Owner, error) {
	var o volume.Owner
	q := r.URL.Query()
	for name, dst := range map[string]**uint32{"uid": &o.UID, "gid": &o.GID, "mode": &o.Mode} {
		v := q.Get(name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return o, errdefs.New(errdefs.ErrInvalidArgument, "%s must be a non-negative 32-bit integer", name)
		}
		u := uint32(n)
		*dst = &u
	}
	return o, nil
}

func boolQuery(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errdefs.New(errdefs.ErrInvalidArgument, "%s must be true or false", name)
	}
	return b, nil
}

func (s *Server) volumePathStat(w http.ResponseWriter, r *http.Request) error {
	st, err := s.cfg.Volumes.Stat(r.Context(), r.PathValue("volumeID"), r.URL.Query().Get("path"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) volumePathUpdate(w http.ResponseWriter, r *http.Request) error {
	var md wire.VolumeMetadata
	if err := decode(w, r, &md, false); err != nil {
		return err
	}
	st, err := s.cfg.Volumes.SetMetadata(r.Context(), r.PathValue("volumeID"), r.URL.Query().Get("path"), md)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) volumePathRemove(w http.ResponseWriter, r *http.Request) error {
	if err := s.cfg.Volumes.Remove(r.Context(), r.PathValue("volumeID"), r.URL.Query().Get("path")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) volumeDirList(w http.ResponseWriter, r *http.Request) error {
	depth := 1
	if v := r.URL.Query().Get("depth"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return errdefs.New(errdefs.ErrInvalidArgument, "depth must be a non-negative integer")
		}
		depth = int(min(n, 64))
	}
	out, err := s.cfg.Volumes.ListDir(r.Context(), r.PathValue("volumeID"), r.URL.Query().Get("path"), depth)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) volumeDirMake(w http.ResponseWriter, r *http.Request) error {
	o, err := owner(r)
	if err != nil {
		return err
	}
	force, err := boolQuery(r, "force")
	if err != nil {
		return err
	}
	st, err := s.cfg.Volumes.MakeDir(r.Context(), r.PathValue("volumeID"), r.URL.Query().Get("path"), force, o)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, st)
	return nil
}

func (s *Server) volumeFileRead(w http.ResponseWriter, r *http.Request) error {
	f, err := s.cfg.Volumes.OpenFile(r.Context(), r.PathValue("volumeID"), r.URL.Query().Get("path"))
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	io.Copy(w, f)
	return nil
}

func (s *Server) volumeFileWrite(w http.ResponseWriter, r *http.Request) error {
	o, err := owner(r)
	if err != nil {
		return err
	}
	if _, err := boolQuery(r, "force"); err != nil {
		return err
	}
	id := r.PathValue("volumeID")
	v, err := s.cfg.Volumes.Get(r.Context(), id)
	if err != nil {
		return err
	}
	// An upload larger than the whole volume cannot fit: refused before
	// a byte is written.
	if r.ContentLength > v.SizeMB<<20 {
		return errdefs.New(errdefs.ErrTooLarge, "the upload (%d bytes) is larger than the volume (%d MiB)", r.ContentLength, v.SizeMB)
	}
	st, err := s.cfg.Volumes.WriteFile(r.Context(), id, r.URL.Query().Get("path"), r.Body, o)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, st)
	return nil
}
