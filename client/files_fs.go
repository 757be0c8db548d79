package client

import (
	"context"
	"os"
	"time"

	"connectrpc.com/connect"

	"github.com/sbxdev/sbx/gen/filesystem"
	"github.com/sbxdev/sbx/gen/filesystem/filesystemconnect"
)

// Entry types of [EntryInfo].
const (
	EntryFile    = "file"
	EntryDir     = "dir"
	EntrySymlink = "symlink"
)

// EntryInfo describes a file or directory in a sandbox, as the envd
// filesystem service reports it.
type EntryInfo struct {
	Name string `json:"name"`
	// Type is [EntryFile], [EntryDir] or [EntrySymlink] (a link that leads
	// nowhere); a link to a file or directory has its target's type.
	Type string `json:"type"`
	// Path is the absolute path in the sandbox.
	Path string `json:"path"`
	Size int64  `json:"size"`
	// Mode holds the permission bits, with set-user-ID, set-group-ID and
	// sticky as chmod(1) writes them (0o4755).
	Mode uint32 `json:"mode"`
	// Permissions is the mode as ls -l shows it, such as "-rw-r--r--".
	Permissions  string    `json:"permissions"`
	Owner        string    `json:"owner"`
	Group        string    `json:"group"`
	ModifiedTime time.Time `json:"modifiedTime"`
	// SymlinkTarget is set for symbolic links.
	SymlinkTarget string `json:"symlinkTarget,omitempty"`
}

// FileMode returns the entry's permission bits as an os.FileMode.
func (e EntryInfo) FileMode() os.FileMode {
	m := os.FileMode(e.Mode & 0o777)
	if e.Mode&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if e.Mode&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if e.Mode&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}

func entryOf(e *filesystem.EntryInfo) EntryInfo {
	out := EntryInfo{
		Name: e.GetName(), Path: e.GetPath(), Size: e.GetSize(), Mode: e.GetMode(),
		Permissions: e.GetPermissions(), Owner: e.GetOwner(), Group: e.GetGroup(),
		SymlinkTarget: e.GetSymlinkTarget(),
	}
	if t := e.GetModifiedTime(); t != nil {
		out.ModifiedTime = t.AsTime()
	}
	switch e.GetType() {
	case filesystem.FileType_FILE_TYPE_FILE:
		out.Type = EntryFile
	case filesystem.FileType_FILE_TYPE_DIRECTORY:
		out.Type = EntryDir
	case filesystem.FileType_FILE_TYPE_SYMLINK:
		out.Type = EntrySymlink
	}
	return out
}

// fsRPC returns a client of the agent's filesystem service.
func (s *Sandbox) fsRPC() filesystemconnect.FilesystemClient {
	return filesystemconnect.NewFilesystemClient(s.filesHTTP(), s.c.baseURL.String())
}

func fsRequest[T any](msg *T, opts *FileOptions) *connect.Request[T] {
	req := connect.NewRequest(msg)
	if opts != nil {
		withUser(req, opts.User)
	}
	return req
}

// Stat describes path.
func (s *Sandbox) Stat(ctx context.Context, path string, opts *FileOptions) (*EntryInfo, error) {
	resp, err := s.fsRPC().Stat(ctx, fsRequest(&filesystem.StatRequest{Path: path}, opts))
	if err != nil {
		return nil, rpcErr("stat "+path, err)
	}
	e := entryOf(resp.Msg.GetEntry())
	return &e, nil
}

// Exists reports whether path exists. Other errors (permission denied, a
// sandbox that is gone) are returned as errors.
func (s *Sandbox) Exists(ctx context.Context, path string, opts *FileOptions) (bool, error) {
	_, err := s.Stat(ctx, path, opts)
	if IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// List returns the entries of directory path, and of its subdirectories
// down to depth levels (depth 1, or 0, lists path itself only).
func (s *Sandbox) List(ctx context.Context, path string, depth int, opts *FileOptions) ([]EntryInfo, error) {
	depth = max(depth, 1)
	resp, err := s.fsRPC().ListDir(ctx, fsRequest(&filesystem.ListDirRequest{Path: path, Depth: uint32(depth)}, opts))
	if err != nil {
		return nil, rpcErr("list "+path, err)
	}
	out := make([]EntryInfo, 0, len(resp.Msg.GetEntries()))
	for _, e := range resp.Msg.GetEntries() {
		out = append(out, entryOf(e))
	}
	return out, nil
}

// MakeDir creates directory path and its missing parents. It reports
// false, without error, when path already exists as a directory.
func (s *Sandbox) MakeDir(ctx context.Context, path string, opts *FileOptions) (bool, error) {
	_, err := s.fsRPC().MakeDir(ctx, fsRequest(&filesystem.MakeDirRequest{Path: path}, opts))
	if connect.CodeOf(err) == connect.CodeAlreadyExists {
		return false, nil
	}
	if err != nil {
		return false, rpcErr("make directory "+path, err)
	}
	return true, nil
}

// Move renames src to dst and returns dst's description.
func (s *Sandbox) Move(ctx context.Context, src, dst string, opts *FileOptions) (*EntryInfo, error) {
	resp, err := s.fsRPC().Move(ctx, fsRequest(&filesystem.MoveRequest{Source: src, Destination: dst}, opts))
	if err != nil {
		return nil, rpcErr("move "+src, err)
	}
	e := entryOf(resp.Msg.GetEntry())
	return &e, nil
}

// Remove removes path, recursively for a directory.
func (s *Sandbox) Remove(ctx context.Context, path string, opts *FileOptions) error {
	_, err := s.fsRPC().Remove(ctx, fsRequest(&filesystem.RemoveRequest{Path: path}, opts))
	return rpcErr("remove "+path, err)
}
