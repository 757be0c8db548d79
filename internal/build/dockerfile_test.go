package build

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/sbxdev/sbx/internal/errdefs"
)

func TestParseDockerfile(t *testing.T) {
	src := `# syntax and comments
FROM base AS app
arg V=1
RUN echo a \
  # a comment inside a continuation
  && echo b
RUN ["/bin/echo", "x y"]
COPY --chown=user:user --chmod=644 a b /dst/

ENV A=1 B="two words"
CMD echo hi
`
	ins, err := ParseDockerfile(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, in := range ins {
		got = append(got, in.Cmd)
	}
	if want := []string{"FROM", "ARG", "RUN", "RUN", "COPY", "ENV", "CMD"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("instructions %v, want %v", got, want)
	}
	if ins[2].Raw != "echo a   && echo b" || ins[2].Line != 4 || ins[2].JSON {
		t.Errorf("continued RUN: %+v", ins[2])
	}
	if !ins[3].JSON || !reflect.DeepEqual(ins[3].Args, []string{"/bin/echo", "x y"}) {
		t.Errorf("exec form: %+v", ins[3])
	}
	if ins[4].Flags["chown"] != "user:user" || ins[4].Flags["chmod"] != "644" || ins[4].Raw != "a b /dst/" {
		t.Errorf("COPY flags: %+v", ins[4])
	}
}

func TestParseDockerfileErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"FROM base\nFROBNICATE x\n", `line 2: unknown instruction "FROBNICATE"`},
		{"FROM base\nVOLUME /data\n", "line 2: VOLUME is not supported"},
		{"FROM base\nCOPY --from=build /a /b\n", "COPY --from is not supported"},
		{"FROM base\nRUN --mount=type=cache,target=/x true\n", "RUN does not support --mount"},
		{"FROM base\nRUN\n", "line 2: RUN needs arguments"},
		{"FROM base\nSHELL bash -c\n", "SHELL needs the JSON form"},
		{"# only a comment\n", "no instructions"},
		{"# escape=`\nFROM base\n", "escape character"},
	} {
		_, err := ParseDockerfile(strings.NewReader(tc.src))
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(errdefs.Message(err), tc.want) {
			t.Errorf("%q: %v, want %q", tc.src, err, tc.want)
		}
	}
}

func TestWords(t *testing.T) {
	env := map[string]string{"A": "1", "E": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`K=v K2="two words"`, []string{"K=v", "K2=two words"}},
		{`x=$A y=${A} z='$A'`, []string{"x=1", "y=1", "z=$A"}},
		{`${E:-def} ${A:-def} ${A:+alt} ${E:+alt}.`, []string{"def", "1", "alt", "."}},
		{`a\ b "q\"q" \$A`, []string{"a b", `q"q`, "$A"}},
		{`$NOPE-x ${NOPE}y`, []string{"-x", "y"}},
	} {
		got, err := words(tc.in, lookup)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("words(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{`"open`, `'open`, `${A`, `${A:?x}`} {
		if _, err := words(bad, lookup); err == nil {
			t.Errorf("words(%q): no error", bad)
		}
	}
}
