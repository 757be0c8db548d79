// Package atomicfile writes whole files at once: through a temporary file
// beside the target and a rename, so that a reader that opens the path sees
// either nothing, the old file or the complete new one, never a part. The
// server writes runtime bundles with it and the agent its quiesced marker
// (through package agentapi); it imports nothing of sbx, so both can.
package atomicfile

import "os"

// Write writes b to path with mode through path+".tmp" and a rename, so a
// reader never sees half a file. A crash can leave path+".tmp" behind; the
// next Write replaces it.
func Write(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
