package sandbox

import (
	"errors"
	"testing"

	"github.com/sbxdev/sbx/internal/errdefs"
)

func TestCheckVolumeMounts(t *testing.T) {
	ok := [][]VolumeMount{
		nil,
		{{VolumeID: "a", Path: "/data"}},
		{{VolumeID: "a", Path: "/mnt/a"}, {VolumeID: "a", Path: "/mnt/b"}},
		{{VolumeID: "a", Path: "/home/user/work"}, {VolumeID: "b", Path: "/procs"}},
	}
	for _, m := range ok {
		if err := checkVolumeMounts(m); err != nil {
			t.Errorf("%+v: %v", m, err)
		}
	}
	bad := [][]VolumeMount{
		{{Path: "data"}},
		{{Path: ""}},
		{{Path: "/"}},
		{{Path: "/proc"}},
		{{Path: "/proc/sys"}},
		{{Path: "/sys"}},
		{{Path: "/dev/shm"}},
		{{Path: "/.sbx"}},
		{{Path: "/.sbx/run"}},
		{{Path: "/a/../proc"}},
		{{Path: "/a/"}},
		{{Path: "/a//b"}},
		{{Path: "/a\x00"}},
		{{Path: "/a"}, {Path: "/a"}},
		{{Path: "/a"}, {Path: "/a/b"}},
		{{Path: "/a/b"}, {Path: "/a"}},
	}
	for _, m := range bad {
		if err := checkVolumeMounts(m); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%+v: %v, want invalid argument", m, err)
		}
	}
	many := make([]VolumeMount, maxVolumeMounts+1)
	for i := range many {
		many[i] = VolumeMount{Path: "/m" + string(rune('a'+i))}
	}
	if err := checkVolumeMounts(many); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("%d mounts: %v", len(many), err)
	}
}
