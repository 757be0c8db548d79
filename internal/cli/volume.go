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

	"github.com/sbxdev/sbx/client"
)

// runVolume implements `sbx volume create|ls|rm|cp`.
func runVolume(e *env, args []string) int {
	fset := e.flags("volume")
	if len(args) == 0 {
		return e.usageErr(fset, "want create, ls, rm or cp")
	}
	sub := args[0]
	switch sub {
	case "create":
		size := fset.Int64("size-mb", 0, "the volume's size quota in `MiB` (default: the server's)")
		asJSON := fset.Bool("json", false, "print the volume as JSON")
		pos, code, ok := e.parse(fset, args[1:])
		if !ok {
			return code
		}
		if len(pos) != 1 {
			return e.usageErr(fset, "want one volume name")
		}
		c, err := e.client()
		if err != nil {
			return e.fail("volume create", err)
		}
		v, err := c.CreateVolume(e.ctx, pos[0], *size)
		if err != nil {
			return e.failOn("volume create", pos[0], err)
		}
		if *asJSON {
			return e.printJSON(v)
		}
		fmt.Fprintln(e.stdout, v.ID)
		return exitOK
	case "ls", "list":
		asJSON := fset.Bool("json", false, "print the volumes as JSON")
		pos, code, ok := e.parse(fset, args[1:])
		if !ok {
			return code
		}
		if len(pos) != 0 {
			return e.usageErr(fset, "unexpected argument %q", pos[0])
		}
		c, err := e.client()
		if err != nil {
			return e.fail("volume ls", err)
		}
		vols, err := c.ListVolumes(e.ctx)
		if err != nil {
			return e.fail("volume ls", err)
		}
		if *asJSON {
			return e.printJSON(vols)
		}
		tw := e.table()
		fmt.Fprintln(tw, "ID\tNAME\tSIZE")
		for _, v := range vols {
			fmt.Fprintf(tw, "%s\t%s\t%d MiB\n", v.ID, v.Name, v.SizeMB)
		}
		tw.Flush()
		return exitOK
	case "rm", "delete":
		pos, code, ok := e.parse(fset, args[1:])
		if !ok {
			return code
		}
		if len(pos) == 0 {
			return e.usageErr(fset, "no volume name or ID")
		}
		return e.forEach("volume rm", pos, false, func(c *client.Client, ref string) error {
			v, err := findVolume(e, c, ref)
			if err != nil {
				return err
			}
			return c.DestroyVolume(e.ctx, v.ID)
		})
	case "cp":
		pos, code, ok := e.parse(fset, args[1:])
		if !ok {
			return code
		}
		if len(pos) != 2 {
			return e.usageErr(fset, "want a source and a destination")
		}
		srcVol, srcPath, srcRemote := splitRemote(pos[0])
		dstVol, dstPath, dstRemote := splitRemote(pos[1])
		if srcRemote == dstRemote {
			return e.usageErr(fset, "exactly one of source and destination must be VOLUME:PATH")
		}
		ref, p := srcVol, srcPath
		if dstRemote {
			ref, p = dstVol, dstPath
		}
		if p == "" {
			return e.usageErr(fset, "empty path after %q", ref+":")
		}
		c, err := e.client()
		if err != nil {
			return e.fail("volume cp", err)
		}
		v, err := findVolume(e, c, ref)
		if err != nil {
			return e.failOn("volume cp", ref, err)
		}
		files := c.Volume(v)
		if dstRemote {
			err = e.volumeUpload(files, pos[0], dstPath)
		} else {
			err = e.volumeDownload(files, srcPath, pos[1])
		}
		if err != nil {
			return e.fail("volume cp", err)
		}
		return exitOK
	case "-h", "-help", "--help":
		fset.Usage()
		return exitOK
	}
	return e.usageErr(fset, "unknown subcommand %q: want create, ls, rm or cp", sub)
}

// findVolume finds a volume by name, or else by ID, with its token.
func findVolume(e *env, c *client.Client, ref string) (*client.Volume, error) {
	v, err := c.FindVolume(e.ctx, ref)
	if err == nil || !client.IsNotFound(err) {
		return v, err
	}
	return c.GetVolume(e.ctx, ref)
}

// volumeUpload copies local file or tree src to dst in the volume; dst
// ending in "/" is a directory the file goes into. Symbolic links in a
// local tree are skipped, as by `sbx cp`.
func (e *env) volumeUpload(f *client.VolumeFiles, src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		if strings.HasSuffix(dst, "/") {
			dst = path.Join(dst, filepath.Base(src))
		}
		return e.volumeUploadFile(f, src, dst, fi)
	}
	mode := func(fi fs.FileInfo) *uint32 { m := uint32(fi.Mode().Perm()); return &m }
	if _, err := f.MakeDir(e.ctx, dst, true, client.VolumeOwner{Mode: mode(fi)}); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		target := path.Join(dst, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			_, err = f.MakeDir(e.ctx, target, true, client.VolumeOwner{Mode: mode(info)})
			return err
		case info.Mode().IsRegular():
			return e.volumeUploadFile(f, p, target, info)
		default:
			fmt.Fprintf(e.stderr, "sbx: skipping %s: not a regular file or directory\n", p)
			return nil
		}
	})
}

func (e *env) volumeUploadFile(f *client.VolumeFiles, src, dst string, fi fs.FileInfo) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	var r io.Reader = in
	if fi.Size() > progressMin {
		p := e.progress(dst, fi.Size())
		defer p.done()
		r = p.reader(r)
	}
	m := uint32(fi.Mode().Perm())
	if _, err := f.Write(e.ctx, dst, r, fi.Size(), client.VolumeOwner{Mode: &m}); err != nil {
		return fmt.Errorf("%s: %w", dst, err)
	}
	return nil
}

// volumeDownload copies file or directory src of the volume to local
// dst ("-": a file to stdout).
func (e *env) volumeDownload(f *client.VolumeFiles, src, dst string) error {
	st, err := f.Stat(e.ctx, src)
	if err != nil {
		return err
	}
	if st.Type != "directory" {
		if dst == "-" {
			r, err := f.Read(e.ctx, src)
			if err != nil {
				return err
			}
			defer r.Close()
			return e.copyOut(e.stdout, r, st.Path, st.Size)
		}
		if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
			dst = filepath.Join(dst, st.Name)
		}
		return e.volumeDownloadFile(f, *st, dst)
	}
	if dst == "-" {
		return errors.New("cannot write a directory to stdout")
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	entries, err := f.List(e.ctx, src, listDepth)
	if err != nil {
		return err
	}
	for _, en := range entries {
		rel := strings.TrimPrefix(strings.TrimPrefix(en.Path, st.Path), "/")
		if rel == "" || !filepath.IsLocal(rel) {
			continue
		}
		local := filepath.Join(dst, filepath.FromSlash(rel))
		switch en.Type {
		case "directory":
			if err := os.MkdirAll(local, os.FileMode(en.Mode&0o777)|0o700); err != nil {
				return err
			}
		case "file":
			if err := e.volumeDownloadFile(f, en, local); err != nil {
				return err
			}
		default:
			fmt.Fprintf(e.stderr, "sbx: skipping %s: a %s\n", en.Path, en.Type)
		}
	}
	return nil
}

func (e *env) volumeDownloadFile(f *client.VolumeFiles, en client.VolumeEntry, local string) error {
	r, err := f.Read(e.ctx, en.Path)
	if err != nil {
		return err
	}
	defer r.Close()
	return e.writeLocal(local, r, en.Path, en.Size, os.FileMode(en.Mode&0o777))
}

// volumeFlag collects --volume NAME:PATH flags as path → volume name.
type volumeFlag map[string]string

func (f volumeFlag) String() string {
	parts := make([]string, 0, len(f))
	for p, name := range f {
		parts = append(parts, name+":"+p)
	}
	return strings.Join(parts, ",")
}

func (f volumeFlag) Set(s string) error {
	name, p, ok := strings.Cut(s, ":")
	if !ok || name == "" || p == "" {
		return fmt.Errorf("%q is not NAME:PATH", s)
	}
	if _, dup := f[p]; dup {
		return fmt.Errorf("two volumes at %s", p)
	}
	f[p] = name
	return nil
}
