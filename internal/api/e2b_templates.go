package api

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sbxdev/sbx/internal/build"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/template"
	"github.com/sbxdev/sbx/wire"
)

// E2B's template builder (the e2b SDKs' Template().…, Template.build):
//
//  1. POST /v3/templates makes a build waiting for its steps;
//  2. GET /templates/{id}/files/{hash} says, per COPY, whether its files
//     are cached and, if not, where to upload them: a URL on sbx itself
//     carrying the build's upload token (the SDK uploads without the API
//     key, as to a presigned bucket URL);
//  3. PUT that URL with a tar.gz of the files;
//  4. POST /v2/templates/{id}/builds/{buildID} gives the steps and starts
//     the build;
//  5. GET /templates/{id}/builds/{buildID}/status is polled for the
//     status and new log lines.

// maxUploadBytes bounds one uploaded file archive.
const maxUploadBytes = 4 << 30

var filesHashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// requestTemplateBuild is POST /v3/templates.
func (s *Server) requestTemplateBuild(w http.ResponseWriter, r *http.Request) error {
	bs, err := s.buildsOrErr()
	if err != nil {
		return err
	}
	var req wire.TemplateBuildRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	name, tags, err := buildTags(firstNonEmpty(req.Name, req.Alias), req.Tags)
	if err != nil {
		return err
	}
	var cpus float64
	var mem int64
	if req.CPUCount != nil {
		if *req.CPUCount < 1 || *req.CPUCount > 256 {
			return errdefs.New(errdefs.ErrInvalidArgument, "cpuCount must be from 1 to 256")
		}
		cpus = float64(*req.CPUCount)
	}
	if req.MemoryMB != nil {
		if *req.MemoryMB < 128 || *req.MemoryMB > 1<<20 {
			return errdefs.New(errdefs.ErrInvalidArgument, "memoryMB must be from 128 to 1048576")
		}
		mem = *req.MemoryMB
	}
	if err := s.checkTemplateQuota(r, name); err != nil {
		return err
	}
	bd, err := bs.New(template.Ref(name, tags[0]), tags[1:], cpus, mem)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, wire.TemplateBuildResponse{TemplateID: name, BuildID: bd.ID, Aliases: []string{name}, Names: []string{name}, Tags: tags, Public: false})
	return nil
}

// maxTags bounds the tags of one request.
const maxTags = 64

// buildTags parses a v3 build request's name ("name" or "name:tag") and
// tags into the template's name and the tags its build gets, the one in
// the name first, without repeats; none given is the default tag ("latest"
// is the default tag too, as sbx took it before tags).
func buildTags(ref string, extra []string) (string, []string, error) {
	if ref == "" {
		return "", nil, errdefs.New(errdefs.ErrInvalidArgument, "\"name\" is required")
	}
	name, tag, err := template.ParseRef(ref)
	if err != nil {
		return "", nil, err
	}
	var tags []string
	if strings.Contains(ref, ":") {
		tags = append(tags, tag)
	}
	norm, err := normTags(extra)
	if err != nil {
		return "", nil, err
	}
	for _, t := range norm {
		if !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	if len(tags) == 0 {
		tags = []string{template.DefaultTag}
	}
	return name, tags, nil
}

// normTags validates tags, each a tag without a name, and returns them
// without repeats, "latest" as the default tag.
func normTags(tags []string) ([]string, error) {
	if len(tags) > maxTags {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "at most %d tags", maxTags)
	}
	var out []string
	for _, t := range tags {
		if err := template.ValidateTag(t); err != nil {
			return nil, err
		}
		_, t, _ = template.ParseRef("x:" + t)
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// templateFilesLink is GET /templates/{templateID}/files/{hash}.
func (s *Server) templateFilesLink(w http.ResponseWriter, r *http.Request) error {
	bs, err := s.buildsOrErr()
	if err != nil {
		return err
	}
	hash := r.PathValue("hash")
	if !filesHashRE.MatchString(hash) {
		return errdefs.New(errdefs.ErrInvalidArgument, "files hash must be 64 lowercase hex digits")
	}
	bd, err := bs.Waiting(r.PathValue("templateID"))
	if err != nil {
		return err
	}
	if _, err := os.Stat(bs.FilePath(hash)); err == nil {
		now := time.Now()
		os.Chtimes(bs.FilePath(hash), now, now) // recently used: kept
		writeJSON(w, http.StatusCreated, wire.TemplateFiles{Present: true})
		return nil
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	u := fmt.Sprintf("%s://%s/sbx/v1/uploads/%s/%s?token=%s", scheme, r.Host, bd.ID, hash, bd.Token())
	writeJSON(w, http.StatusCreated, wire.TemplateFiles{Present: false, URL: u})
	return nil
}

// uploadTemplateFiles is PUT /sbx/v1/uploads/{buildID}/{hash}?token=…, the
// upload URL handed out above. It takes no API key: the token, one per
// build and only valid while the build waits for its steps, is the
// credential (compared in constant time). The archive is stored under its
// hash for later builds; it is only read (as an untrusted tar) when a
// build uses it.
//
// Threat: the hash is the client's (E2B's SDK hashes names, modes and
// contents), so a caller could store an archive under a hash another
// caller's build will use. Archives are shared by every key of the
// server, as E2B shares them within a team: sbx's keys belong to one
// team. Whatever an archive holds only ever lands in the template of the
// build that uses it.
func (s *Server) uploadTemplateFiles(w http.ResponseWriter, r *http.Request) error {
	if !s.ready.Load() {
		return errdefs.New(errdefs.ErrUnavailable, "sbx is starting")
	}
	bs, err := s.buildsOrErr()
	if err != nil {
		return err
	}
	bd, err := bs.Get(r.PathValue("buildID"))
	if err != nil || !bd.CheckToken(r.URL.Query().Get("token")) {
		return errdefs.New(errdefs.ErrUnauthenticated, "invalid upload link")
	}
	if bd.Snapshot(1<<62).Status != build.StatusWaiting {
		return errdefs.New(errdefs.ErrFailedPrecondition, "build %s is not waiting for files", bd.ID)
	}
	hash := r.PathValue("hash")
	if !filesHashRE.MatchString(hash) {
		return errdefs.New(errdefs.ErrInvalidArgument, "files hash must be 64 lowercase hex digits")
	}
	tmp, err := os.CreateTemp(filepath.Dir(bs.FilePath(hash)), ".upload-*")
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, http.MaxBytesReader(w, r.Body, maxUploadBytes))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errdefs.New(errdefs.ErrTooLarge, "upload larger than %d bytes", int64(maxUploadBytes))
		}
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "upload interrupted")
	}
	if err := os.Rename(tmp.Name(), bs.FilePath(hash)); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// startTemplateBuild is POST /v2/templates/{templateID}/builds/{buildID}.
func (s *Server) startTemplateBuild(w http.ResponseWriter, r *http.Request) error {
	bs, err := s.buildsOrErr()
	if err != nil {
		return err
	}
	bd, err := bs.Get(r.PathValue("buildID"))
	if err != nil {
		return err
	}
	if bd.Name() != r.PathValue("templateID") {
		return errdefs.New(errdefs.ErrNotFound, "build %q is not a build of template %q", bd.ID, r.PathValue("templateID"))
	}
	var req wire.TemplateBuildStart
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if (req.FromImage == "") == (req.FromTemplate == "") {
		return errdefs.New(errdefs.ErrInvalidArgument, "exactly one of fromImage and fromTemplate is required")
	}
	if len(req.FromImageRegistry) > 0 && string(req.FromImageRegistry) != "null" {
		return errdefs.New(errdefs.ErrInvalidArgument, "registry credentials (fromImageRegistry) are not supported")
	}
	if len(req.Steps) > 1000 {
		return errdefs.New(errdefs.ErrInvalidArgument, "at most 1000 steps")
	}
	cpus, mem := bd.Resources()
	spec := build.Spec{From: firstNonEmpty(req.FromTemplate, req.FromImage), NoCache: req.Force, E2B: true, ReadyCmd: req.ReadyCmd, CPUs: cpus, MemoryMB: mem}
	if req.StartCmd != nil {
		argv := template.StartShell(*req.StartCmd) // empty: no start command
		spec.StartCmd = &argv
	}
	if req.ReadyCmd != nil && strings.ContainsRune(*req.ReadyCmd, 0) {
		return errdefs.New(errdefs.ErrInvalidArgument, "readyCmd: NUL bytes are not allowed")
	}
	extracted := map[string]string{}
	for i, st := range req.Steps {
		in := build.Instruction{Cmd: strings.ToUpper(st.Type), Flags: map[string]string{}, Force: st.Force}
		bad := func(format string, a ...any) error {
			return errdefs.New(errdefs.ErrInvalidArgument, "step %d (%s): %s", i+1, st.Type, fmt.Sprintf(format, a...))
		}
		for _, a := range st.Args {
			if strings.ContainsRune(a, 0) {
				return bad("NUL bytes are not allowed")
			}
		}
		switch in.Cmd {
		case "RUN":
			if len(st.Args) < 1 || len(st.Args) > 2 || st.Args[0] == "" {
				return bad("want [command] or [command, user]")
			}
			in.Raw, in.Args = st.Args[0], st.Args[:1]
			if len(st.Args) == 2 {
				in.User = st.Args[1]
			}
		case "COPY":
			if len(st.Args) < 2 || len(st.Args) > 4 {
				return bad("want [src, dest, user, mode]")
			}
			if !filesHashRE.MatchString(st.FilesHash) {
				return bad("filesHash must be 64 lowercase hex digits")
			}
			in.Args, in.Raw = st.Args[:2], st.Args[0]+" "+st.Args[1]
			if len(st.Args) > 2 && st.Args[2] != "" {
				in.Flags["chown"] = st.Args[2]
			}
			if len(st.Args) > 3 && st.Args[3] != "" {
				in.Flags["chmod"] = st.Args[3]
			}
			dir, ok := extracted[st.FilesHash]
			if !ok {
				if dir, err = s.extractFiles(r, bs, bd, st.FilesHash); err != nil {
					return fmt.Errorf("step %d (COPY): %w", i+1, err)
				}
				extracted[st.FilesHash] = dir
			}
			in.Context = dir
		case "ENV":
			if len(st.Args) == 0 || len(st.Args)%2 != 0 {
				return bad("want [name, value, ...]")
			}
			in.Args = st.Args
			var parts []string
			for j := 0; j < len(st.Args); j += 2 {
				parts = append(parts, st.Args[j]+"="+strconv.Quote(st.Args[j+1]))
			}
			in.Raw = strings.Join(parts, " ")
		case "WORKDIR", "USER":
			if len(st.Args) != 1 || st.Args[0] == "" {
				return bad("want one argument")
			}
			in.Raw, in.Args = st.Args[0], st.Args
		default:
			return bad("unknown step type")
		}
		spec.Instructions = append(spec.Instructions, in)
	}
	if err := bs.Start(r.Context(), bd, spec, isAdmin(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// extractFiles unpacks the uploaded archive hash into the build's work
// directory and returns where.
func (s *Server) extractFiles(r *http.Request, bs *build.Builds, bd *build.Build, hash string) (string, error) {
	f, err := os.Open(bs.FilePath(hash))
	if errors.Is(err, fs.ErrNotExist) {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "the files with hash %s were not uploaded", hash)
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	dir, err := build.MkdirContext(bd, "files-"+hash)
	if err != nil {
		return "", err
	}
	if err := build.ExtractContext(r.Context(), f, dir, 0); err != nil {
		return "", err
	}
	return dir, nil
}

// e2bStepName turns a build step number into E2B's step names: the
// SDK's first stack frame is the base ("base"), instruction i is "i".
func e2bStepName(step int) string {
	switch {
	case step <= 0:
		return ""
	case step == 1:
		return "base"
	}
	return strconv.Itoa(step - 1)
}

// templateBuildStatus is GET /templates/{templateID}/builds/{buildID}/status.
func (s *Server) templateBuildStatus(w http.ResponseWriter, r *http.Request) error {
	bs, err := s.buildsOrErr()
	if err != nil {
		return err
	}
	bd, err := bs.Get(r.PathValue("buildID"))
	if err != nil {
		return err
	}
	if bd.Name() != r.PathValue("templateID") {
		return errdefs.New(errdefs.ErrNotFound, "build %q is not a build of template %q", bd.ID, r.PathValue("templateID"))
	}
	q := r.URL.Query()
	offset, err := atoiDefault(q.Get("logsOffset"), 0)
	if err != nil {
		return err
	}
	limit, err := atoiDefault(q.Get("limit"), 100)
	if err != nil {
		return err
	}
	if limit == 0 || limit > 1000 {
		limit = 1000
	}
	level := q.Get("level")
	snap := bd.Snapshot(offset)
	// Stopping at limit lines keeps offsets exact: the SDK adds the count
	// of entries it got to its offset.
	status := snap.Status
	if len(snap.Events) > limit {
		snap.Events = snap.Events[:limit]
		if status == build.StatusReady || status == build.StatusError {
			status = build.StatusBuilding // more lines to fetch first
		}
	}
	out := wire.TemplateBuildInfo{BuildID: bd.ID, TemplateID: bd.Name(), Status: status, LogEntries: []wire.BuildLogEntry{}, Logs: []string{}}
	for _, e := range snap.Events {
		if level == "error" && e.Level != "error" {
			continue
		}
		out.LogEntries = append(out.LogEntries, wire.BuildLogEntry{Timestamp: e.Time, Level: e.Level, Message: e.Message, Step: e2bStepName(e.Step)})
	}
	if status == build.StatusError {
		msg, step, _ := build.ErrorDetail(snap.Err)
		out.Reason = &wire.BuildReason{Message: msg, Step: e2bStepName(step), LogEntries: []wire.BuildLogEntry{}}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// templateAlias is GET /templates/aliases/{alias} (Template.exists).
// A "name:tag" alias exists when that tag does.
func (s *Server) templateAlias(w http.ResponseWriter, r *http.Request, name string) error {
	if n, _, ok := strings.Cut(name, ":"); ok {
		tg, isTagger := s.templates.(templateTagger)
		if _, _, err := template.ParseRef(name); err != nil || !isTagger {
			return errdefs.New(errdefs.ErrNotFound, "template %q not found", name)
		}
		if _, err := tg.Get(name); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, wire.TemplateAlias{TemplateID: n, Public: false})
		return nil
	}
	if err := template.ValidateName(name); err != nil {
		return errdefs.New(errdefs.ErrNotFound, "template %q not found", name)
	}
	if tg, ok := s.templates.(templateTagger); ok {
		// A name with tags but no default tag exists too.
		if refs, err := tg.Refs(name); err == nil && len(refs) > 0 {
			writeJSON(w, http.StatusOK, wire.TemplateAlias{TemplateID: name, Public: false})
			return nil
		}
	}
	infos, err := s.templates.List(r.Context())
	if err != nil {
		return err
	}
	for _, in := range infos {
		if in.Name == name {
			writeJSON(w, http.StatusOK, wire.TemplateAlias{TemplateID: in.Name, Public: false})
			return nil
		}
	}
	return errdefs.New(errdefs.ErrNotFound, "template %q not found", name)
}
