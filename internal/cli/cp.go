package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/sbxdev/sbx/client"
)

// progressMin is the size from which a transfer shows progress on stderr.
const progressMin = 8 << 20

// listDepth bounds how deep `sbx cp` lists a sandbox directory.
const listDepth = 64

// runCp implements `sbx cp SRC DST`, where exactly one side is ID:PATH.
// A directory is copied file by file, with relative paths and permission
// bits kept; symbolic links in a local tree are skipped (with a warning),
// since following them could copy what lies outside the tree.
func runCp(e *env, args []string) int {
	fset := e.flags("cp")
	user := fset.String("user", "", "act in the sandbox as `USER` (default: the template's user)")
	pos, code, ok := e.parse(fset, args)
	if !ok {
		return code
	}
	if len(pos) != 2 {
		return e.usageErr(fset, "want a source and a destination")
	}
	srcID, srcPath, srcRemote := splitRemote(pos[0])
	dstID, dstPath, dstRemote := splitRemote(pos[1])
	if srcRemote == dstRemote {
		return e.usageErr(fset, "exactly one of source and destination must be ID:PATH")
	}
	id := srcID
	if dstRemote {
		id = dstID
	}
	if (srcRemote && srcPath == "") || (dstRemote && dstPath == "") {
		return e.usageErr(fset, "empty path after %q", id+":")
	}
	c, err := e.client()
	if err != nil {
		return e.fail("cp", err)
	}
	sb, err := attach(e.ctx, c, id)
	if err != nil {
		return e.failOn("cp", id, err)
	}
	if dstRemote {
		err = e.upload(sb, pos[0], dstPath, *user)
	} else {
		err = e.downloadPath(sb, srcPath, pos[1], *user)
	}
	if err != nil {
		return e.fail("cp", err)
	}
	return exitOK
}

// splitRemote splits "ID:PATH". An argument is remote when it has a colon
// with no slash before it, so "./a:b" and "/x:y" stay local paths.
func splitRemote(arg string) (id, p string, remote bool) {
	i := strings.IndexByte(arg, ':')
	if i <= 0 || strings.ContainsRune(arg[:i], '/') {
		return "", arg, false
	}
	return arg[:i], arg[i+1:], true
}

// upload copies local file or tree src to dst in the sandbox. dst ending
// in "/" is a directory the file goes into.
func (e *env) upload(sb *client.Sandbox, src, dst, user string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		if strings.HasSuffix(dst, "/") {
			dst += filepath.Base(src)
		}
		return e.uploadFile(sb, src, dst, fi, user)
	}
	dst = strings.TrimSuffix(dst, "/")
	if dst == "" {
		dst = "/"
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := path.Join(dst, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			// Parents are made by each upload; only empty ones need this.
			if empty, _ := isEmptyDir(p); empty {
				if _, err := sb.MakeDir(e.ctx, target, &client.FileOptions{User: user}); err != nil {
					return err
				}
			}
			return nil
		case info.Mode().IsRegular():
			return e.uploadFile(sb, p, target, info, user)
		default:
			fmt.Fprintf(e.stderr, "sbx cp: skipping %s: not a regular file or directory\n", p)
			return nil
		}
	})
}

func isEmptyDir(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	return err == io.EOF, nil
}

func (e *env) uploadFile(sb *client.Sandbox, src, dst string, fi os.FileInfo, user string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if fi.Size() > progressMin {
		p := e.progress(dst, fi.Size())
		defer p.done()
		r = p.reader(f)
	}
	_, err = sb.WriteFile(e.ctx, dst, r, &client.WriteOptions{User: user, Mode: fi.Mode().Perm()})
	return err
}

// downloadPath copies src in the sandbox, a file or a directory, to local
// dst ("-": a file to stdout).
func (e *env) downloadPath(sb *client.Sandbox, src, dst, user string) error {
	opts := &client.FileOptions{User: user}
	rc, size, err := sb.OpenFile(e.ctx, src, opts)
	if err == nil {
		defer rc.Close()
		if dst == "-" {
			return e.copyOut(e.stdout, rc, src, size)
		}
		if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
			dst = filepath.Join(dst, path.Base(src))
		}
		mode := os.FileMode(0o644)
		if st, err := sb.Stat(e.ctx, src, opts); err == nil {
			mode = st.FileMode().Perm()
		}
		return e.writeLocal(dst, rc, src, size, mode)
	}
	if !errors.Is(err, client.ErrInvalidArgument) { // a directory answers 400
		return err
	}
	if dst == "-" {
		return fmt.Errorf("%s is a directory; cannot copy it to stdout", src)
	}
	root, err := sb.Stat(e.ctx, src, opts)
	if err != nil {
		return err
	}
	entries, err := sb.List(e.ctx, root.Path, listDepth, opts)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, root.FileMode().Perm()|0o700); err != nil {
		return err
	}
	prefix := strings.TrimSuffix(root.Path, "/") + "/"
	for _, en := range entries {
		rel, ok := strings.CutPrefix(en.Path, prefix)
		// Threat: an agent (or a listing) naming paths outside the tree,
		// such as "../../home/me/.bashrc", must not write there.
		if !ok || !filepath.IsLocal(filepath.FromSlash(rel)) {
			return fmt.Errorf("listing of %s names %q, outside it", root.Path, en.Path)
		}
		local := filepath.Join(dst, filepath.FromSlash(rel))
		switch {
		case en.Type == client.EntryDir && en.SymlinkTarget == "":
			if err := os.MkdirAll(local, en.FileMode().Perm()|0o700); err != nil {
				return err
			}
		case en.Type == client.EntryFile:
			if err := e.downloadFile(sb, en, local, opts); err != nil {
				return err
			}
		default:
			fmt.Fprintf(e.stderr, "sbx cp: skipping %s: a link to a directory, or not a regular file\n", en.Path)
		}
	}
	return nil
}

func (e *env) downloadFile(sb *client.Sandbox, en client.EntryInfo, local string, opts *client.FileOptions) error {
	rc, size, err := sb.OpenFile(e.ctx, en.Path, opts)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
		return err
	}
	return e.writeLocal(local, rc, en.Path, size, en.FileMode().Perm())
}

// writeLocal writes r to local file dst with mode.
func (e *env) writeLocal(dst string, r io.Reader, name string, size int64, mode os.FileMode) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if err := e.copyOut(f, r, name, size); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil { // the umask applied at creation
		f.Close()
		return err
	}
	return f.Close()
}

func (e *env) copyOut(w io.Writer, r io.Reader, name string, size int64) error {
	if size > progressMin {
		p := e.progress(name, size)
		defer p.done()
		r = p.reader(r)
	}
	n, err := io.Copy(w, r)
	if err == nil && size >= 0 && n != size {
		return fmt.Errorf("%s: got %d bytes of %d", name, n, size)
	}
	return err
}

// progress shows one line on stderr for a transfer, rewritten at most
// every 250ms: name, bytes so far, percentage and rate.
type progress struct {
	e     *env
	name  string
	total int64
	n     int64
	start time.Time
	last  time.Time
}

func (e *env) progress(name string, total int64) *progress {
	now := time.Now()
	return &progress{e: e, name: name, total: total, start: now, last: now}
}

func (p *progress) reader(r io.Reader) io.Reader { return &progressReader{r, p} }

type progressReader struct {
	r io.Reader
	p *progress
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	pr.p.n += int64(n)
	if now := time.Now(); now.Sub(pr.p.last) >= 250*time.Millisecond {
		pr.p.last = now
		pr.p.print(now)
	}
	return n, err
}

func (p *progress) print(now time.Time) {
	secs := max(now.Sub(p.start).Seconds(), 1e-3)
	fmt.Fprintf(p.e.stderr, "\r%s  %s / %s  %3d%%  %s/s ", p.name, mib(p.n), mib(p.total), p.n*100/max(p.total, 1), mib(int64(float64(p.n)/secs)))
}

func (p *progress) done() {
	p.print(time.Now())
	fmt.Fprintln(p.e.stderr)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
