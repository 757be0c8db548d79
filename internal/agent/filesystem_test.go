package agent

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	pb "github.com/sbxdev/sbx/gen/filesystem"
	"github.com/sbxdev/sbx/gen/filesystem/filesystemconnect"
	"github.com/sbxdev/sbx/internal/errdefs"
)

func fsClient(t testing.TB, proto string) filesystemconnect.FilesystemClient {
	return filesystemconnect.NewFilesystemClient(httpClient(t, proto, testToken), "http://agent")
}

// fsReq wraps msg in a request as user (the agent's default, root, if "").
func fsReq[T any](msg *T, user string) *connect.Request[T] {
	r := connect.NewRequest(msg)
	if user != "" {
		h := basicUser(user)
		r.Header().Set(h[0], h[1])
	}
	return r
}

// fsTempDir returns a fresh directory that every user may search and read
// (t.TempDir's parents are private to root).
func fsTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sbx-fs-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// fsTree makes files (ending without "/") and directories (ending with
// "/") under dir.
func fsTree(t testing.TB, dir string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		full := filepath.Join(dir, p)
		if p[len(p)-1] == '/' {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("data of "+p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func fsStat(t testing.TB, c filesystemconnect.FilesystemClient, path, user string) (*pb.EntryInfo, error) {
	t.Helper()
	res, err := c.Stat(testContext(t), fsReq(&pb.StatRequest{Path: path}, user))
	if err != nil {
		return nil, err
	}
	return res.Msg.GetEntry(), nil
}

func TestFilesystemStat(t *testing.T) {
	dir := fsTempDir(t)
	fsTree(t, dir, "file.txt", "sub/")
	file, sub := filepath.Join(dir, "file.txt"), filepath.Join(dir, "sub")
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	if err := os.Chtimes(file, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	must(t, os.Symlink("file.txt", filepath.Join(dir, "link-file")))
	must(t, os.Symlink(sub, filepath.Join(dir, "link-dir")))
	must(t, os.Symlink("nowhere", filepath.Join(dir, "dangling")))
	must(t, os.Symlink("loop-b", filepath.Join(dir, "loop-a")))
	must(t, os.Symlink("loop-a", filepath.Join(dir, "loop-b")))
	odd := filepath.Join(dir, "odd-owner")
	fsTree(t, dir, "odd-owner")
	must(t, os.Lchown(odd, 54321, 54322))
	must(t, os.Chmod(sub, os.ModeSticky|0o750))

	tests := []struct {
		name   string
		path   string
		want   *pb.EntryInfo // Size, ModifiedTime checked only if set
		target string        // wanted symlink_target; "" for none
	}{
		{"file", file, &pb.EntryInfo{Name: "file.txt", Type: pb.FileType_FILE_TYPE_FILE, Path: file, Size: int64(len("data of file.txt")), Mode: 0o644, Permissions: "-rw-r--r--", Owner: "root", Group: "root"}, ""},
		{"directory with sticky bit", sub, &pb.EntryInfo{Name: "sub", Type: pb.FileType_FILE_TYPE_DIRECTORY, Path: sub, Mode: 0o1750, Permissions: "dtrwxr-x---", Owner: "root", Group: "root"}, ""},
		{"cleaned", dir + "//sub/../file.txt", &pb.EntryInfo{Name: "file.txt", Type: pb.FileType_FILE_TYPE_FILE, Path: file, Mode: 0o644, Permissions: "-rw-r--r--", Owner: "root", Group: "root"}, ""},
		{"symlink to file has its target's type", filepath.Join(dir, "link-file"), &pb.EntryInfo{Name: "link-file", Type: pb.FileType_FILE_TYPE_FILE, Path: filepath.Join(dir, "link-file"), Mode: 0o644, Permissions: "Lrwxrwxrwx", Owner: "root", Group: "root"}, file},
		{"symlink to directory", filepath.Join(dir, "link-dir"), &pb.EntryInfo{Name: "link-dir", Type: pb.FileType_FILE_TYPE_DIRECTORY, Path: filepath.Join(dir, "link-dir"), Mode: 0o1750, Permissions: "Lrwxrwxrwx", Owner: "root", Group: "root"}, sub},
		{"dangling symlink", filepath.Join(dir, "dangling"), &pb.EntryInfo{Name: "dangling", Type: pb.FileType_FILE_TYPE_SYMLINK, Path: filepath.Join(dir, "dangling"), Mode: 0o777, Permissions: "Lrwxrwxrwx", Owner: "root", Group: "root"}, "nowhere"},
		{"symlink loop", filepath.Join(dir, "loop-a"), &pb.EntryInfo{Name: "loop-a", Type: pb.FileType_FILE_TYPE_SYMLINK, Path: filepath.Join(dir, "loop-a"), Mode: 0o777, Permissions: "Lrwxrwxrwx", Owner: "root", Group: "root"}, "loop-b"},
		{"unknown owner is numeric", odd, &pb.EntryInfo{Name: "odd-owner", Type: pb.FileType_FILE_TYPE_FILE, Path: odd, Mode: 0o644, Permissions: "-rw-r--r--", Owner: "54321", Group: "54322"}, ""},
		{"root", "/", &pb.EntryInfo{Name: "/", Type: pb.FileType_FILE_TYPE_DIRECTORY, Path: "/", Mode: 0o755, Permissions: "drwxr-xr-x", Owner: "root", Group: "root"}, ""},
	}
	for _, protocol := range protocols {
		c := fsClient(t, protocol)
		for _, tt := range tests {
			t.Run(protocol+"/"+tt.name, func(t *testing.T) {
				got, err := fsStat(t, c, tt.path, "")
				if err != nil {
					t.Fatal(err)
				}
				if got.GetModifiedTime() == nil {
					t.Error("no modified_time")
				}
				if tt.name == "file" && !got.GetModifiedTime().AsTime().Equal(mtime) {
					t.Errorf("modified_time %v, want %v", got.GetModifiedTime().AsTime(), mtime)
				}
				if tt.want.Size == 0 {
					tt.want.Size = got.Size
				}
				if got.GetSymlinkTarget() != tt.target || (tt.target == "") != (got.SymlinkTarget == nil) {
					t.Errorf("symlink_target %v, want %q", got.SymlinkTarget, tt.target)
				}
				got.ModifiedTime, got.SymlinkTarget = nil, nil
				if !proto.Equal(got, tt.want) {
					t.Errorf("entry\n got %v\nwant %v", got, tt.want)
				}
			})
		}
	}

	c := fsClient(t, "h2c")
	for _, p := range []string{filepath.Join(dir, "missing"), filepath.Join(dir, "file.txt", "below-a-file")} {
		_, err := fsStat(t, c, p, "")
		wantCode(t, err, connect.CodeNotFound)
	}
	_, err := fsStat(t, c, "", "")
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = fsStat(t, c, dir, "no-such-user")
	wantCode(t, err, connect.CodeInvalidArgument)
}

func TestResolvePath(t *testing.T) {
	u := &account{name: "u", home: "/home/u"}
	for _, tt := range []struct{ in, want string }{
		{"/abs/x", "/abs/x"},
		{"/abs/../x/", "/x"},
		{"rel", "/home/u/rel"},
		{"./rel/../other", "/home/u/other"},
		{"~", "/home/u"},
		{"~/x", "/home/u/x"},
		{"~other/x", "/home/u/~other/x"},
		{"..", "/home"},
	} {
		if got, err := resolvePath(u, tt.in); err != nil || got != tt.want {
			t.Errorf("resolvePath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if got, _ := resolvePath(&account{home: ""}, "x"); got != "/x" {
		t.Errorf("without a home: %q, want /x", got)
	}
	for _, in := range []string{"", "a\x00b"} {
		if _, err := resolvePath(u, in); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("resolvePath(%q): %v, want invalid argument", in, err)
		}
	}
}

func TestFilesystemMakeDir(t *testing.T) {
	dir := fsTempDir(t)
	fsTree(t, dir, "file")
	c := fsClient(t, "h2c")

	deep := filepath.Join(dir, "a", "b", "c")
	res, err := c.MakeDir(testContext(t), fsReq(&pb.MakeDirRequest{Path: deep}, ""))
	if err != nil {
		t.Fatal(err)
	}
	if e := res.Msg.GetEntry(); e.GetPath() != deep || e.GetType() != pb.FileType_FILE_TYPE_DIRECTORY || e.GetName() != "c" {
		t.Errorf("entry %v", e)
	}
	if fi, err := os.Stat(deep); err != nil || !fi.IsDir() {
		t.Fatalf("not made: %v", err)
	}

	_, err = c.MakeDir(testContext(t), fsReq(&pb.MakeDirRequest{Path: deep}, ""))
	wantCode(t, err, connect.CodeAlreadyExists) // the SDK's makeDir returns false
	_, err = c.MakeDir(testContext(t), fsReq(&pb.MakeDirRequest{Path: filepath.Join(dir, "file")}, ""))
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = c.MakeDir(testContext(t), fsReq(&pb.MakeDirRequest{Path: filepath.Join(dir, "file", "below")}, ""))
	wantCode(t, err, connect.CodeInvalidArgument)

	// Every directory made for a user is the user's.
	open := filepath.Join(dir, "open")
	must(t, os.Mkdir(open, 0o777))
	must(t, os.Chmod(open, 0o777))
	nested := filepath.Join(open, "x", "y")
	res, err = c.MakeDir(testContext(t), fsReq(&pb.MakeDirRequest{Path: nested}, "nobody"))
	if err != nil {
		t.Fatal(err)
	}
	if e := res.Msg.GetEntry(); e.GetOwner() != "nobody" || e.GetGroup() != "nogroup" {
		t.Errorf("entry owned by %s:%s, want nobody:nogroup", e.GetOwner(), e.GetGroup())
	}
	for _, p := range []string{filepath.Join(open, "x"), nested} {
		wantOwner(t, p, 65534, 65534)
	}
	wantOwner(t, open, 0, 0)
}

func TestFilesystemMove(t *testing.T) {
	dir := fsTempDir(t)
	fsTree(t, dir, "src.txt", "tree/inner/f", "other.txt")
	c := fsClient(t, "h2c")

	dst := filepath.Join(dir, "new", "parent", "dst.txt")
	res, err := c.Move(testContext(t), fsReq(&pb.MoveRequest{Source: filepath.Join(dir, "src.txt"), Destination: dst}, ""))
	if err != nil {
		t.Fatal(err)
	}
	if e := res.Msg.GetEntry(); e.GetPath() != dst || e.GetName() != "dst.txt" || e.GetType() != pb.FileType_FILE_TYPE_FILE {
		t.Errorf("entry %v", e)
	}
	wantContent(t, dst, "data of src.txt")
	if _, err := os.Lstat(filepath.Join(dir, "src.txt")); !os.IsNotExist(err) {
		t.Errorf("source still there: %v", err)
	}

	// A directory moves with its contents; a file in the way is replaced.
	_, err = c.Move(testContext(t), fsReq(&pb.MoveRequest{Source: filepath.Join(dir, "tree"), Destination: filepath.Join(dir, "moved")}, ""))
	if err != nil {
		t.Fatal(err)
	}
	wantContent(t, filepath.Join(dir, "moved", "inner", "f"), "data of tree/inner/f")
	_, err = c.Move(testContext(t), fsReq(&pb.MoveRequest{Source: filepath.Join(dir, "other.txt"), Destination: dst}, ""))
	if err != nil {
		t.Fatal(err)
	}
	wantContent(t, dst, "data of other.txt")

	_, err = c.Move(testContext(t), fsReq(&pb.MoveRequest{Source: filepath.Join(dir, "missing"), Destination: filepath.Join(dir, "x")}, ""))
	wantCode(t, err, connect.CodeNotFound)
	_, err = c.Move(testContext(t), fsReq(&pb.MoveRequest{Source: filepath.Join(dir, "moved"), Destination: filepath.Join(dir, "moved", "inner", "self")}, ""))
	wantCode(t, err, connect.CodeInvalidArgument)
}

func TestFilesystemListDir(t *testing.T) {
	dir := fsTempDir(t)
	fsTree(t, dir, "a.txt", "b/", "b/c.txt", "b/d/", "b/d/e.txt", "b/d/f/g.txt")
	// Links that would loop or leave the tree if followed.
	must(t, os.Symlink("..", filepath.Join(dir, "b", "up")))
	must(t, os.Symlink("/", filepath.Join(dir, "b", "d", "root")))
	must(t, os.Symlink("self", filepath.Join(dir, "self")))
	c := fsClient(t, "h2c")

	list := func(path string, depth uint32) ([]string, []*pb.EntryInfo, error) {
		t.Helper()
		res, err := c.ListDir(testContext(t), fsReq(&pb.ListDirRequest{Path: path, Depth: depth}, ""))
		if err != nil {
			return nil, nil, err
		}
		var names []string
		for _, e := range res.Msg.GetEntries() {
			rel, _ := filepath.Rel(path, e.GetPath())
			names = append(names, rel)
		}
		return names, res.Msg.GetEntries(), nil
	}
	for _, tt := range []struct {
		depth uint32
		want  []string
	}{
		{0, []string{"a.txt", "b", "self"}},
		{1, []string{"a.txt", "b", "self"}},
		{2, []string{"a.txt", "b", "b/c.txt", "b/d", "b/up", "self"}},
		{3, []string{"a.txt", "b", "b/c.txt", "b/d", "b/d/e.txt", "b/d/f", "b/d/root", "b/up", "self"}},
		{100, []string{"a.txt", "b", "b/c.txt", "b/d", "b/d/e.txt", "b/d/f", "b/d/f/g.txt", "b/d/root", "b/up", "self"}},
	} {
		got, entries, err := list(dir, tt.depth)
		if err != nil {
			t.Fatalf("depth %d: %v", tt.depth, err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("depth %d: %q, want %q", tt.depth, got, tt.want)
		}
		for _, e := range entries {
			if e.GetName() != filepath.Base(e.GetPath()) || e.GetOwner() != "root" {
				t.Errorf("entry %v", e)
			}
			if e.GetName() == "up" && (e.GetType() != pb.FileType_FILE_TYPE_DIRECTORY || e.GetSymlinkTarget() != dir) {
				t.Errorf("link up: %v", e)
			}
			if e.GetName() == "self" && e.GetType() != pb.FileType_FILE_TYPE_SYMLINK {
				t.Errorf("self link: %v", e)
			}
		}
	}

	// Through a symlink to a directory, paths stay under the link.
	got, _, err := list(filepath.Join(dir, "b", "up", "b", "d"), 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"e.txt", "f", "root"}; !slices.Equal(got, want) {
		t.Errorf("through a link: %q, want %q", got, want)
	}
	_, entries, _ := list(filepath.Join(dir, "b", "up", "b", "d"), 1)
	if p := entries[0].GetPath(); p != filepath.Join(dir, "b", "up", "b", "d", "e.txt") {
		t.Errorf("path through a link: %q", p)
	}

	empty := filepath.Join(dir, "empty")
	must(t, os.Mkdir(empty, 0o755))
	if got, _, err := list(empty, 1); err != nil || len(got) != 0 {
		t.Errorf("empty: %q, %v", got, err)
	}
	_, _, err = list(filepath.Join(dir, "a.txt"), 1)
	wantCode(t, err, connect.CodeInvalidArgument)
	_, _, err = list(filepath.Join(dir, "missing"), 1)
	wantCode(t, err, connect.CodeNotFound)
	_, _, err = list(filepath.Join(dir, "self"), 1)
	wantCode(t, err, connect.CodeInvalidArgument) // a symlink loop
}

func TestFilesystemRemove(t *testing.T) {
	dir := fsTempDir(t)
	fsTree(t, dir, "f.txt", "tree/a/b/c.txt", "kept/k.txt")
	must(t, os.Symlink(filepath.Join(dir, "kept"), filepath.Join(dir, "link")))
	c := fsClient(t, "h2c")
	remove := func(p string) error {
		_, err := c.Remove(testContext(t), fsReq(&pb.RemoveRequest{Path: p}, ""))
		return err
	}
	for _, p := range []string{"f.txt", "tree", "link"} {
		if err := remove(filepath.Join(dir, p)); err != nil {
			t.Fatalf("remove %s: %v", p, err)
		}
		if _, err := os.Lstat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", p, err)
		}
	}
	wantContent(t, filepath.Join(dir, "kept", "k.txt"), "data of kept/k.txt") // not followed
	// Again: nothing there, as envd a success.
	if err := remove(filepath.Join(dir, "f.txt")); err != nil {
		t.Errorf("remove of a missing path: %v, want success as envd", err)
	}
	wantCode(t, remove(""), connect.CodeInvalidArgument)
}

// TestFilesystemPermissions checks that calls run with the caller's
// identity: nobody cannot see into, list, change or remove what is root's.
func TestFilesystemPermissions(t *testing.T) {
	dir := fsTempDir(t)
	fsTree(t, dir, "private/secret.txt", "public/root-file.txt", "public/sub/")
	private, public := filepath.Join(dir, "private"), filepath.Join(dir, "public")
	must(t, os.Chmod(private, 0o700))
	c := fsClient(t, "h2c")
	const user = "nobody"

	_, err := fsStat(t, c, filepath.Join(private, "secret.txt"), user)
	wantCode(t, err, connect.CodePermissionDenied)
	_, err = c.ListDir(testContext(t), fsReq(&pb.ListDirRequest{Path: private}, user))
	wantCode(t, err, connect.CodePermissionDenied)
	_, err = c.Remove(testContext(t), fsReq(&pb.RemoveRequest{Path: filepath.Join(public, "root-file.txt")}, user))
	wantCode(t, err, connect.CodePermissionDenied)
	_, err = c.Remove(testContext(t), fsReq(&pb.RemoveRequest{Path: private}, user))
	wantCode(t, err, connect.CodePermissionDenied)
	_, err = c.MakeDir(testContext(t), fsReq(&pb.MakeDirRequest{Path: filepath.Join(public, "new")}, user))
	wantCode(t, err, connect.CodePermissionDenied)
	_, err = c.Move(testContext(t), fsReq(&pb.MoveRequest{Source: filepath.Join(public, "root-file.txt"), Destination: filepath.Join(public, "sub", "x")}, user))
	wantCode(t, err, connect.CodePermissionDenied)
	wantCode(t, watchErr(t, c, &pb.WatchDirRequest{Path: private}, user), connect.CodePermissionDenied)
	_, err = c.CreateWatcher(testContext(t), fsReq(&pb.CreateWatcherRequest{Path: private}, user))
	wantCode(t, err, connect.CodePermissionDenied)
	for _, p := range []string{private, filepath.Join(private, "secret.txt"), filepath.Join(public, "root-file.txt")} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	// Where the sandbox's /root is private, nobody cannot list it (read only).
	if fi, err := os.Stat("/root"); err == nil && fi.Mode().Perm()&0o005 == 0 {
		_, err = c.ListDir(testContext(t), fsReq(&pb.ListDirRequest{Path: "/root"}, user))
		wantCode(t, err, connect.CodePermissionDenied)
	}

	// What nobody may see, it sees; root still sees everything after.
	if _, err := fsStat(t, c, filepath.Join(public, "root-file.txt"), user); err != nil {
		t.Errorf("nobody stat of a public file: %v", err)
	}
	if _, err := fsStat(t, c, filepath.Join(private, "secret.txt"), "root"); err != nil {
		t.Errorf("root stat after nobody: %v", err)
	}
}

// TestFSIdentity checks the identity thread: calls see the user's fsuid and
// groups; the caller's thread keeps root's.
func TestFSIdentity(t *testing.T) {
	u, err := systemUsers.lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	u.groups = append(u.groups, 4242)
	var fsuid, fsgid int
	var groups []int
	err = asUser(u, func() error {
		fsuid, _ = unix.SetfsuidRetUid(-1)
		fsgid, _ = unix.SetfsgidRetGid(-1)
		groups, err = unix.Getgroups()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(groups)
	if fsuid != 65534 || fsgid != 65534 || !slices.Equal(groups, []int{4242, 65534}) {
		t.Errorf("fsuid %d fsgid %d groups %v, want 65534 65534 [4242 65534]", fsuid, fsgid, groups)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if got, _ := unix.SetfsuidRetUid(-1); got != 0 {
		t.Errorf("caller's fsuid %d", got)
	}
	sentinel := errors.New("from fn")
	if err := asUser(u, func() error { return sentinel }); err != sentinel {
		t.Errorf("asUser returned %v", err)
	}
}

func TestFSError(t *testing.T) {
	for _, tt := range []struct {
		err   error
		class error
	}{
		{&os.PathError{Op: "stat", Path: "/x", Err: syscall.ENOENT}, errdefs.ErrNotFound},
		{syscall.ENOTDIR, errdefs.ErrNotFound},
		{syscall.EACCES, errdefs.ErrPermissionDenied},
		{syscall.EPERM, errdefs.ErrPermissionDenied},
		{syscall.EEXIST, errdefs.ErrConflict},
		{syscall.ENOTEMPTY, errdefs.ErrConflict},
		{syscall.ELOOP, errdefs.ErrInvalidArgument},
		{syscall.EROFS, errdefs.ErrFailedPrecondition},
		{syscall.ENOSPC, errdefs.ErrFailedPrecondition},
	} {
		err := fsError(tt.err, "op", "/p")
		if !errors.Is(err, tt.class) {
			t.Errorf("%v: class of %v is wrong, want %v", tt.err, err, tt.class)
		}
	}
	if err := fsError(syscall.EIO, "op", "/p"); errdefs.Message(err) != "internal error" {
		t.Errorf("EIO: message %q", errdefs.Message(err))
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantOwner(t testing.TB, p string, uid, gid uint32) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uid || st.Gid != gid {
		t.Errorf("%s owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
	}
}

func wantContent(t testing.TB, p, want string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Errorf("%s holds %q, want %q", p, b, want)
	}
}
