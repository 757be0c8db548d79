package agentapi

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/sbxdev/sbx/internal/atomicfile"
	"github.com/sbxdev/sbx/internal/errdefs"
)

// QuiesceSignal asks the agent to give its socket away before a checkpoint
// (step 1 of the quiesce protocol in the package doc). The runsc runtime
// sends it; the agent, run with -listen unix:..., handles it.
const QuiesceSignal = syscall.SIGUSR1

// WakeSignal tells a quiesced agent to take [ReconfigName], if there is one,
// and listen again (step 5). The runsc runtime sends it; an agent that is
// serving only takes [ReconfigName].
const WakeSignal = syscall.SIGUSR2

// QuiescedName is the marker file, in the socket directory, by which the
// agent says it has let go of its socket (step 3). The agent writes it with
// [WriteQuiesced] and removes it when it listens again; the runsc runtime
// waits for it, reads it with [ReadQuiesced] and removes it when it wakes
// the agent.
const QuiescedName = "quiesced"

// wakesMark is the content of a marker whose agent listens again by itself
// once the checkpoint that follows is over. An empty marker (the only kind
// older agents write) says it waits for [WakeSignal].
const wakesMark = "wakes-after-checkpoint\n"

// maxMarker bounds what [ReadQuiesced] reads: more than any marker holds.
const maxMarker = 64

// WriteQuiesced writes the marker [QuiescedName] into dir, whole at once
// (the runtime reads it as soon as it appears): with wakes, the agent
// listens again by itself at the end of the checkpoint that follows.
func WriteQuiesced(dir string, wakes bool) error {
	var mark []byte
	if wakes {
		mark = []byte(wakesMark)
	}
	if err := atomicfile.Write(filepath.Join(dir, QuiescedName), mark, 0o600); err != nil {
		return fmt.Errorf("write quiesced marker: %w", err)
	}
	return nil
}

// ReadQuiesced reads the marker [QuiescedName] in dir and reports whether
// the agent wakes by itself after the checkpoint. The box's root writes that
// directory: a symlink, a FIFO or a device there is not followed or read
// (errdefs.ErrInvalidArgument), and neither is content that is not one of
// the two markers, such as a half-written one. A missing marker is an error
// satisfying errors.Is(err, fs.ErrNotExist).
func ReadQuiesced(dir string) (wakes bool, err error) {
	path := filepath.Join(dir, QuiescedName)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return false, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "quiesced marker %s is a symlink", path)
		}
		return false, fmt.Errorf("read quiesced marker: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return false, fmt.Errorf("read quiesced marker: %w", err)
	} else if !fi.Mode().IsRegular() {
		return false, errdefs.New(errdefs.ErrInvalidArgument, "quiesced marker %s is not a regular file", path)
	}
	b := make([]byte, maxMarker)
	n, _ := f.Read(b)
	switch string(b[:n]) {
	case "":
		return false, nil
	case wakesMark:
		return true, nil
	}
	return false, errdefs.New(errdefs.ErrInvalidArgument, "quiesced marker %s holds %q", path, b[:n])
}
