package build

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// Instruction is one Dockerfile instruction, or one step of an E2B
// template, as the builder runs it.
type Instruction struct {
	// Cmd is the instruction's keyword in upper case ("RUN", "COPY", ...).
	Cmd string
	// Line is the line it starts on (0 for E2B steps).
	Line int
	// Flags are its --name=value options, in order ("chown" → "user").
	Flags map[string]string
	// Args are its arguments: for the exec (JSON) form the array's
	// elements, else the rest of the line as written (Raw).
	Args []string
	// JSON is true for the exec form (RUN ["a", "b"]).
	JSON bool
	// Raw is the text after the keyword and flags, continuation lines
	// joined.
	Raw string
	// Context, for COPY and ADD, is the directory sources are taken from;
	// empty means the build's context.
	Context string
	// User, for RUN (E2B's runCmd(..., {user})), runs this step as another
	// user than the current USER.
	User string
	// Force runs the step even when its layer is cached (E2B's skipCache).
	Force bool
}

// String is the instruction as shown in build output.
func (in Instruction) String() string {
	var b strings.Builder
	b.WriteString(in.Cmd)
	for _, k := range sortedKeys(in.Flags) {
		fmt.Fprintf(&b, " --%s=%s", k, in.Flags[k])
	}
	if in.Raw != "" {
		b.WriteString(" ")
		b.WriteString(in.Raw)
	}
	return b.String()
}

// supported lists the instructions the builder knows, with the flags each
// accepts.
var supported = map[string][]string{
	"FROM":       {"platform"},
	"RUN":        nil,
	"COPY":       {"chown", "chmod"},
	"ADD":        {"chown", "chmod"},
	"ENV":        nil,
	"WORKDIR":    nil,
	"USER":       nil,
	"ARG":        nil,
	"CMD":        nil,
	"ENTRYPOINT": nil,
	"LABEL":      nil,
	"EXPOSE":     nil,
	"SHELL":      nil,
	"MAINTAINER": nil,
}

// refused names instructions that exist in Docker but that sbx templates
// cannot honour, with the reason.
var refused = map[string]string{
	"VOLUME":      "sandboxes have no volumes",
	"HEALTHCHECK": "use the template's ready command instead",
	"ONBUILD":     "templates have no build triggers",
	"STOPSIGNAL":  "sandboxes are stopped by killing them",
}

// maxDockerfile bounds a Dockerfile's size.
const maxDockerfile = 1 << 20

// ParseDockerfile reads a Dockerfile: comments, line continuations
// (a trailing backslash), case-insensitive keywords, --flags, and the exec
// (JSON array) and shell forms. Every error is errdefs.ErrInvalidArgument
// and names the line. Heredocs and parser directives other than the
// default escape character are not supported.
func ParseDockerfile(r io.Reader) ([]Instruction, error) {
	sc := bufio.NewScanner(io.LimitReader(r, maxDockerfile+1))
	sc.Buffer(make([]byte, 64<<10), maxDockerfile+1)
	var out []Instruction
	var cur strings.Builder
	start, lineNo, total := 0, 0, 0
	flush := func() error {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return nil
		}
		in, err := parseLine(text, start)
		if err != nil {
			return err
		}
		out = append(out, in)
		return nil
	}
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		total += len(line) + 1
		if total > maxDockerfile {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "Dockerfile is larger than %d bytes", maxDockerfile)
		}
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			if lineNo == 1 || cur.Len() == 0 && len(out) == 0 {
				if d := strings.ToLower(strings.ReplaceAll(trimmed[1:], " ", "")); strings.HasPrefix(d, "escape=") && d != "escape=\\" {
					return nil, errdefs.New(errdefs.ErrInvalidArgument, "line %d: only the default escape character (\\) is supported", lineNo)
				}
			}
			continue // comments, also between continuation lines
		}
		if cur.Len() == 0 {
			if trimmed == "" {
				continue
			}
			start = lineNo
		}
		if strings.HasSuffix(strings.TrimRight(line, " \t"), "\\") {
			l := strings.TrimRight(line, " \t")
			cur.WriteString(l[:len(l)-1])
			continue
		}
		cur.WriteString(line)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "read Dockerfile: %v", err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "the Dockerfile has no instructions")
	}
	return out, nil
}

func parseLine(text string, line int) (Instruction, error) {
	kw, rest, _ := strings.Cut(text, " ")
	if i := strings.IndexAny(kw, "\t"); i >= 0 {
		kw, rest = text[:i], text[i+1:]
	}
	cmd := strings.ToUpper(kw)
	in := Instruction{Cmd: cmd, Line: line, Flags: map[string]string{}}
	if why, ok := refused[cmd]; ok {
		return in, errdefs.New(errdefs.ErrInvalidArgument, "line %d: %s is not supported: %s", line, cmd, why)
	}
	allowed, ok := supported[cmd]
	if !ok {
		return in, errdefs.New(errdefs.ErrInvalidArgument, "line %d: unknown instruction %q", line, kw)
	}
	rest = strings.TrimSpace(rest)
	// --flags come first.
	for strings.HasPrefix(rest, "--") {
		f, r, _ := strings.Cut(rest, " ")
		rest = strings.TrimSpace(r)
		name, val, _ := strings.Cut(f[2:], "=")
		if cmd == "COPY" && name == "from" {
			return in, errdefs.New(errdefs.ErrInvalidArgument, "line %d: COPY --from is not supported (multi-stage builds are not)", line)
		}
		if !contains(allowed, name) {
			return in, errdefs.New(errdefs.ErrInvalidArgument, "line %d: %s does not support --%s", line, cmd, name)
		}
		in.Flags[name] = val
	}
	in.Raw = rest
	if strings.HasPrefix(rest, "[") {
		var arr []string
		if err := json.Unmarshal([]byte(rest), &arr); err == nil {
			switch cmd {
			case "RUN", "CMD", "ENTRYPOINT", "COPY", "ADD", "SHELL":
				in.JSON, in.Args = true, arr
			}
		}
	}
	if !in.JSON {
		in.Args = []string{rest}
	}
	if rest == "" && cmd != "CMD" && cmd != "ENTRYPOINT" {
		return in, errdefs.New(errdefs.ErrInvalidArgument, "line %d: %s needs arguments", line, cmd)
	}
	if cmd == "SHELL" && !in.JSON {
		return in, errdefs.New(errdefs.ErrInvalidArgument, "line %d: SHELL needs the JSON form, e.g. SHELL [\"/bin/bash\", \"-c\"]", line)
	}
	return in, nil
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

// lookupFunc finds a variable for substitution.
type lookupFunc func(name string) (string, bool)

// words splits s into words as Docker does for ENV, LABEL, ARG, COPY and
// the like: whitespace separates words, single quotes keep everything,
// double quotes keep spaces and allow $ substitution, a backslash escapes
// the next character, and $VAR, ${VAR}, ${VAR:-default} and ${VAR:+alt}
// are replaced using lookup (nil: no substitution).
func words(s string, lookup lookupFunc) ([]string, error) {
	var out []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				out = append(out, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated single quote")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				switch {
				case s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$", s[i+1]) >= 0:
					i++
					w.WriteByte(s[i])
				case s[i] == '$' && lookup != nil:
					v, n, err := expandVar(s[i:], lookup)
					if err != nil {
						return nil, err
					}
					w.WriteString(v)
					i += n - 1
				default:
					w.WriteByte(s[i])
				}
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated double quote")
			}
			inWord = true
		case c == '$' && lookup != nil:
			v, n, err := expandVar(s[i:], lookup)
			if err != nil {
				return nil, err
			}
			w.WriteString(v)
			i += n - 1
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, w.String())
	}
	return out, nil
}

// expand substitutes variables in s, keeping everything else (quotes and
// spaces) as written: for WORKDIR, USER and the JSON forms' elements.
func expand(s string, lookup lookupFunc) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == '$':
			b.WriteByte('$')
			i++
		case s[i] == '$':
			v, n, err := expandVar(s[i:], lookup)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i += n - 1
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), nil
}

// expandVar expands the variable reference at the start of s ("$NAME",
// "${NAME}", "${NAME:-word}", "${NAME:+word}") and returns its value and
// the bytes it took. A lone "$" stays itself.
func expandVar(s string, lookup lookupFunc) (string, int, error) {
	isName := func(c byte, first bool) bool {
		return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	if len(s) < 2 {
		return "$", 1, nil
	}
	if s[1] != '{' {
		n := 1
		for n < len(s) && isName(s[n], n == 1) {
			n++
		}
		if n == 1 {
			return "$", 1, nil
		}
		v, _ := lookup(s[1:n])
		return v, n, nil
	}
	end := strings.IndexByte(s, '}')
	if end < 0 {
		return "", 0, fmt.Errorf("missing '}' in %q", s)
	}
	body := s[2:end]
	name, mod, word := body, "", ""
	if i := strings.Index(body, ":"); i >= 0 {
		name, mod = body[:i], body[i:]
		if len(mod) < 2 || (mod[1] != '-' && mod[1] != '+') {
			return "", 0, fmt.Errorf("unsupported substitution ${%s}", body)
		}
		word, mod = mod[2:], mod[:2]
	}
	for i := 0; i < len(name); i++ {
		if !isName(name[i], i == 0) {
			return "", 0, fmt.Errorf("bad variable name in ${%s}", body)
		}
	}
	v, ok := lookup(name)
	switch mod {
	case ":-":
		if !ok || v == "" {
			v = word
		}
	case ":+":
		if ok && v != "" {
			v = word
		} else {
			v = ""
		}
	}
	return v, end + 1, nil
}
