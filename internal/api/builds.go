package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"

	"github.com/sbxdev/sbx/internal/build"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/wire"
)

// Template builds, sbx's own routes (the E2B ones are in e2b_templates.go).

// buildOut is a build as the API shows it.
func buildOut(b *build.Build) wire.Build {
	s := b.Snapshot(1 << 62)
	out := wire.Build{BuildID: b.ID, TemplateID: b.Template, Status: s.Status, CreatedAt: b.Created, Logs: s.Total}
	if !s.Finished.IsZero() {
		f := s.Finished
		out.FinishedAt = &f
	}
	out.Error, out.Step, out.ExitCode = build.ErrorDetail(s.Err)
	return out
}

func (s *Server) buildsOrErr() (*build.Builds, error) {
	if s.cfg.Builds == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "this server does not build templates")
	}
	return s.cfg.Builds, nil
}

func isAdmin(r *http.Request) bool { return serverAdmin(r) }

// createBuild starts a build from an uploaded context: the body is a tar
// (optionally gzipped) of the context, or multipart/form-data with a
// "dockerfile" part (its text) and a "context" part (the tar). Query:
// name (required), dockerfile (the Dockerfile's path in the context,
// default "Dockerfile"), buildArg=K=V (repeated), noCache=true.
func (s *Server) createBuild(w http.ResponseWriter, r *http.Request) error {
	bs, err := s.buildsOrErr()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	name := q.Get("name")
	if name == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "query parameter \"name\" (the template's name) is required")
	}
	args := map[string]string{}
	for _, kv := range q["buildArg"] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return errdefs.New(errdefs.ErrInvalidArgument, "buildArg %q: want NAME=VALUE", kv)
		}
		args[k] = v
	}
	noCache, _ := strconv.ParseBool(q.Get("noCache"))
	if err := s.checkTemplateQuota(r, name); err != nil {
		return err
	}
	bd, err := bs.New(name, nil, 0, 0)
	if err != nil {
		return err
	}
	started := false
	defer func() {
		if !started {
			bs.Discard(bd)
		}
	}()
	ctxDir, err := build.MkdirContext(bd, "context")
	if err != nil {
		return err
	}
	body := http.MaxBytesReader(w, r.Body, build.DefaultMaxContextBytes+(64<<20))
	var dockerfile []byte
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		mr := multipart.NewReader(body, params["boundary"])
		gotContext := false
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "malformed multipart body")
			}
			switch part.FormName() {
			case "dockerfile":
				dockerfile, err = io.ReadAll(io.LimitReader(part, 1<<20+1))
				if err != nil {
					return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "read the dockerfile part")
				}
				if len(dockerfile) > 1<<20 {
					return errdefs.New(errdefs.ErrTooLarge, "the Dockerfile is larger than 1 MiB")
				}
			case "context":
				if err := build.ExtractContext(r.Context(), part, ctxDir, 0); err != nil {
					return err
				}
				gotContext = true
			default:
				return errdefs.New(errdefs.ErrInvalidArgument, "unexpected part %q: want \"dockerfile\" and \"context\"", part.FormName())
			}
		}
		if !gotContext && dockerfile == nil {
			return errdefs.New(errdefs.ErrInvalidArgument, "the body has neither a \"dockerfile\" nor a \"context\" part")
		}
	} else if err := build.ExtractContext(r.Context(), body, ctxDir, 0); err != nil {
		return err
	}
	if dockerfile == nil {
		dockerfile, err = build.ReadContextFile(ctxDir, firstNonEmpty(q.Get("dockerfile"), "Dockerfile"))
		if err != nil {
			return err
		}
	}
	ins, err := build.ParseDockerfile(bytes.NewReader(dockerfile))
	if err != nil {
		return err
	}
	spec := build.Spec{Instructions: ins, Context: ctxDir, BuildArgs: args, NoCache: noCache}
	if err := bs.Start(r.Context(), bd, spec, isAdmin(r)); err != nil {
		return err
	}
	started = true
	writeJSON(w, http.StatusAccepted, buildOut(bd))
	return nil
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func (s *Server) getBuild(w http.ResponseWriter, r *http.Request) error {
	bs, err := s.buildsOrErr()
	if err != nil {
		return err
	}
	bd, err := bs.Get(r.PathValue("buildID"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, buildOut(bd))
	return nil
}

// buildLogs streams a build's log as JSON lines from offset; with
// follow=true it waits for new lines until the build ends and then writes
// a last line of kind "end" with the outcome.
func (s *Server) buildLogs(w http.ResponseWriter, r *http.Request) error {
	bs, err := s.buildsOrErr()
	if err != nil {
		return err
	}
	bd, err := bs.Get(r.PathValue("buildID"))
	if err != nil {
		return err
	}
	offset, err := atoiDefault(r.URL.Query().Get("offset"), 0)
	if err != nil {
		return err
	}
	follow, _ := strconv.ParseBool(r.URL.Query().Get("follow"))
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	for {
		snap := bd.Snapshot(offset)
		for _, e := range snap.Events {
			if err := enc.Encode(buildEvent(e)); err != nil {
				return nil // the client went away
			}
		}
		offset += len(snap.Events)
		done := snap.Status == build.StatusReady || snap.Status == build.StatusError
		if done || !follow {
			if done {
				msg, step, code := build.ErrorDetail(snap.Err)
				enc.Encode(wire.BuildEvent{Time: snap.Finished, Level: levelOf(snap.Err), Step: step, Kind: "end", Message: msg, Status: snap.Status, ExitCode: code})
			}
			if fl != nil {
				fl.Flush()
			}
			return nil
		}
		if fl != nil {
			fl.Flush()
		}
		bd.Wait(r.Context(), offset)
		if r.Context().Err() != nil {
			return nil
		}
	}
}

// buildEvent is a log line of a build as the API shows it.
func buildEvent(e build.Event) wire.BuildEvent {
	return wire.BuildEvent{Time: e.Time, Level: e.Level, Step: e.Step, Kind: e.Kind, Message: e.Message}
}

func levelOf(err error) string {
	if err != nil {
		return "error"
	}
	return "info"
}
