package api

import (
	"errors"
	"slices"
	"testing"

	"github.com/sbxdev/sbx/internal/errdefs"
)

func TestBuildTags(t *testing.T) {
	for _, c := range []struct {
		ref   string
		extra []string
		name  string
		tags  []string
	}{
		{ref: "web", name: "web", tags: []string{"default"}},
		{ref: "web:v1", name: "web", tags: []string{"v1"}},
		{ref: "web:latest", name: "web", tags: []string{"default"}},
		{ref: "web", extra: []string{"a", "b", "a"}, name: "web", tags: []string{"a", "b"}},
		{ref: "web:v1", extra: []string{"stable", "v1", "latest"}, name: "web", tags: []string{"v1", "stable", "default"}},
	} {
		name, tags, err := buildTags(c.ref, c.extra)
		if err != nil || name != c.name || !slices.Equal(tags, c.tags) {
			t.Errorf("buildTags(%q, %q) = %q, %q, %v; want %q, %q", c.ref, c.extra, name, tags, err, c.name, c.tags)
		}
	}
	for _, c := range []struct {
		ref   string
		extra []string
	}{
		{ref: ""}, {ref: "web:"}, {ref: "Web"}, {ref: "web:V1"}, {ref: "web:a:b"},
		{ref: "web", extra: []string{""}}, {ref: "web", extra: []string{"web:v1"}},
		{ref: "web", extra: []string{"../x"}}, {ref: "web", extra: slices.Repeat([]string{"t"}, maxTags+1)},
	} {
		if _, _, err := buildTags(c.ref, c.extra); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("buildTags(%q, %q): %v, want invalid argument", c.ref, c.extra, err)
		}
	}
}
