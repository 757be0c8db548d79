package api

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/wire"
)

// Sandbox logs: GET /v2/sandboxes/{id}/logs and E2B's older GET
// /sandboxes/{id}/logs serve the sandbox's agent log (see
// [sandbox.DataPlane.AgentLog]), each line parsed from slog's (and runc's)
// key=value text into a structured entry.

const (
	maxLogLimit  = 1000
	maxLogSearch = 256
	// maxLogLine bounds one line; a longer one ends the read there.
	maxLogLine = 1 << 20
)

// logLevels orders the levels a minimum filter compares.
var logLevels = map[string]int{"debug": 0, "info": 1, "warn": 2, "error": 3}

// logQuery is what a logs request asks for.
type logQuery struct {
	cursor   time.Time // forward: at or after; backward: at or before
	limit    int
	backward bool
	level    int
	search   string
}

// sandboxLogs is GET /v2/sandboxes/{id}/logs: query cursor (ms since the
// epoch), limit (at most 1000), direction (forward, backward), level (the
// least severe to include) and search (a case-sensitive substring of the
// message).
func (s *Server) sandboxLogs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	lq := logQuery{limit: maxLogLimit}
	var err error
	if lq.cursor, err = msParam(q.Get("cursor"), "cursor"); err != nil {
		return err
	}
	if lq.limit, err = atoiDefault(q.Get("limit"), maxLogLimit); err != nil || lq.limit > maxLogLimit {
		return errdefs.New(errdefs.ErrInvalidArgument, "limit must be from 0 to %d", maxLogLimit)
	}
	switch d := q.Get("direction"); d {
	case "", "forward":
	case "backward":
		lq.backward = true
		if q.Get("cursor") == "" {
			lq.cursor = time.Now()
		}
	default:
		return errdefs.New(errdefs.ErrInvalidArgument, "direction must be forward or backward, not %q", d)
	}
	if l := q.Get("level"); l != "" {
		n, ok := logLevels[l]
		if !ok {
			return errdefs.New(errdefs.ErrInvalidArgument, "level must be debug, info, warn or error, not %q", l)
		}
		lq.level = n
	}
	if lq.search = q.Get("search"); len(lq.search) > maxLogSearch {
		return errdefs.New(errdefs.ErrInvalidArgument, "search must be at most %d bytes", maxLogSearch)
	}
	entries, _, err := s.readLogs(r, lq)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.SandboxLogsV2{Logs: entries})
	return nil
}

// sandboxLogsV1 is E2B's deprecated GET /sandboxes/{id}/logs: query start
// (ms since the epoch) and limit, oldest first.
func (s *Server) sandboxLogsV1(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	lq := logQuery{}
	var err error
	if lq.cursor, err = msParam(q.Get("start"), "start"); err != nil {
		return err
	}
	if lq.limit, err = atoiDefault(q.Get("limit"), maxLogLimit); err != nil {
		return err
	}
	entries, lines, err := s.readLogs(r, lq)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.SandboxLogs{Logs: lines, LogEntries: entries})
	return nil
}

func msParam(v, name string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, errdefs.New(errdefs.ErrInvalidArgument, "%s must be a non-negative number of milliseconds since the epoch", name)
	}
	return time.UnixMilli(n), nil
}

// readLogs reads the sandbox's log and keeps what lq asks for, oldest
// first (newest first when backward), with each entry's text line.
func (s *Server) readLogs(r *http.Request, lq logQuery) ([]wire.SandboxLogEntry, []wire.SandboxLogLine, error) {
	b, err := s.mgr.DataPlane().AgentLog(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, nil, err
	}
	type kept struct {
		e    wire.SandboxLogEntry
		line string
	}
	var out []kept
	var last time.Time
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), maxLogLine)
	for sc.Scan() && lq.limit > 0 {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		e := parseLogLine(line, last)
		last = e.Timestamp
		switch {
		case logLevels[e.Level] < lq.level,
			lq.search != "" && !strings.Contains(e.Message, lq.search),
			!lq.backward && e.Timestamp.Before(lq.cursor),
			lq.backward && e.Timestamp.After(lq.cursor):
			continue
		}
		out = append(out, kept{e, line})
		if len(out) > lq.limit {
			if !lq.backward {
				out = out[:lq.limit]
				break
			}
			out = out[1:] // backward keeps the newest
		}
	}
	if lq.backward {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	entries := make([]wire.SandboxLogEntry, 0, len(out))
	lines := make([]wire.SandboxLogLine, 0, len(out))
	for _, k := range out {
		entries = append(entries, k.e)
		lines = append(lines, wire.SandboxLogLine{Timestamp: k.e.Timestamp, Line: k.line})
	}
	return entries, lines, nil
}

// parseLogLine parses a key=value log line (slog's text handler, runc's
// logrus lines). time, level and msg become the entry's own fields, the
// rest its Fields. A line of another form is an info entry with the line
// as its message, at the time of the line before (prev).
func parseLogLine(line string, prev time.Time) wire.SandboxLogEntry {
	e := wire.SandboxLogEntry{Timestamp: prev, Level: "info", Fields: map[string]string{}}
	if rest, ok := strings.CutPrefix(line, "--- sbx: "); ok {
		// The runtime driver's header before each start of the box.
		msg, at, _ := strings.Cut(rest, " at ")
		if t, err := time.Parse(time.RFC3339Nano, at); err == nil {
			e.Timestamp = t
		}
		e.Message = msg
		return e
	}
	kv, ok := splitLogfmt(line)
	if !ok || kv["msg"] == "" {
		e.Message = line
		return e
	}
	for k, v := range kv {
		switch k {
		case "time":
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				e.Timestamp = t
			}
		case "level":
			e.Level = normLevel(v)
		case "msg":
			e.Message = v
		default:
			e.Fields[k] = v
		}
	}
	return e
}

func normLevel(l string) string {
	switch strings.ToLower(l) {
	case "debug", "trace":
		return "debug"
	case "info":
		return "info"
	case "warn", "warning":
		return "warn"
	}
	return "error" // error, fatal, panic and what is not known
}

// splitLogfmt splits key=value pairs, values bare or Go-quoted. It reports
// false for a line that is not of that form.
func splitLogfmt(line string) (map[string]string, bool) {
	out := map[string]string{}
	for line != "" {
		eq := strings.IndexByte(line, '=')
		if eq <= 0 || strings.ContainsAny(line[:eq], " \t\"") {
			return nil, false
		}
		key := line[:eq]
		line = line[eq+1:]
		var val string
		if strings.HasPrefix(line, `"`) {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				return nil, false
			}
			val, _ = strconv.Unquote(q)
			line = line[len(q):]
		} else if sp := strings.IndexByte(line, ' '); sp >= 0 {
			val, line = line[:sp], line[sp:]
		} else {
			val, line = line, ""
		}
		out[key] = val
		line = strings.TrimLeft(line, " ")
	}
	return out, true
}
