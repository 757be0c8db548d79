package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// benchTransfer uploads a file of size bytes with WriteFile and downloads
// it with OpenFile, reps times each, through the server's data-plane proxy
// to the agent, and returns each transfer's duration.
func benchTransfer(ctx context.Context, sb *client.Sandbox, size int64, reps int) (up, down []time.Duration) {
	data := make([]byte, size)
	rand.Read(data)
	for i := 0; i < reps; i++ {
		t0 := time.Now()
		if _, err := sb.WriteFile(ctx, "/tmp/big.bin", bytes.NewReader(data), nil); err != nil {
			fatal(err)
		}
		up = append(up, time.Since(t0))

		t0 = time.Now()
		rc, n, err := sb.OpenFile(ctx, "/tmp/big.bin", nil)
		if err != nil {
			fatal(err)
		}
		got, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil || got != size || n != size {
			fatalf("download: %d of %d bytes (size %d): %v", got, size, n, err)
		}
		down = append(down, time.Since(t0))
	}
	// One full comparison, outside the timings: the bytes came back as sent.
	back, err := sb.ReadFile(ctx, "/tmp/big.bin", nil)
	if err != nil || !bytes.Equal(back, data) {
		fatalf("round trip changed the file (%d bytes back, %v)", len(back), err)
	}
	return up, down
}

// benchSmallFiles writes a 1 KiB file and reads it back, n times, and
// returns each write+read.
func benchSmallFiles(ctx context.Context, sb *client.Sandbox, n int) []time.Duration {
	data := make([]byte, 1024)
	rand.Read(data)
	var out []time.Duration
	for i := 0; i < n+5; i++ {
		t0 := time.Now()
		if _, err := sb.WriteFile(ctx, "small.txt", bytes.NewReader(data), nil); err != nil {
			fatal(err)
		}
		back, err := sb.ReadFile(ctx, "small.txt", nil)
		d := time.Since(t0)
		if err != nil || !bytes.Equal(back, data) {
			fatalf("small file round trip: %v", err)
		}
		if i >= 5 { // warm-up
			out = append(out, d)
		}
	}
	return out
}

// rate is size bytes over the median of ds, in MB/s (10^6 bytes).
func rate(size int64, ds []time.Duration) string {
	med := pct(ds, 50)
	return fmt.Sprintf("%.0f MB/s (%.0f MiB/s)", float64(size)/1e6/med.Seconds(), float64(size)/(1<<20)/med.Seconds())
}

// importBaseCopy imports the base template's files as an OCI image layout
// (one uncompressed layer, ids unshifted as an image has them) under name,
// so that creates from an imported template and from base compare the
// same files.
func importBaseCopy(ctx context.Context, c *client.Client, name string) time.Duration {
	base := filepath.Join(harness.TemplatesDir(), "base", "rootfs")
	var shift uint32
	var st unix.Stat_t
	if err := unix.Stat(base, &st); err == nil {
		shift = st.Uid // the rootfs's root is owned by the shifted root
	}
	dir := tb.TempDir()
	// The harness's servers and their sandboxes run as other host ids:
	// the layout must be readable by the server (root), which it is.
	layerFile := filepath.Join(dir, "layer.tar")
	f, err := os.Create(layerFile)
	if err != nil {
		fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	err = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode()&(fs.ModeDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0 {
			return nil
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if fi.IsDir() {
			hdr.Name += "/"
		}
		s := fi.Sys().(*syscall.Stat_t)
		hdr.Uid, hdr.Gid = int(s.Uid-shift), int(s.Gid-shift)
		hdr.Uname, hdr.Gname = "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, src)
			src.Close()
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		fatalf("tar of the base template: %v", err)
	}
	layer, err := tarball.LayerFromFile(layerFile, tarball.WithCompressionLevel(1))
	if err != nil {
		fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"}, User: "user"})
	if err != nil {
		fatal(err)
	}
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		fatal(err)
	}
	os.Remove(layerFile)
	t0 := time.Now()
	empty := ""
	if _, err := c.ImportTemplate(ctx, client.ImportOptions{Name: name, Source: client.ImportLayout, Path: filepath.Join(dir, "layout"),
		TemplateSettings: client.TemplateSettings{StartCmd: &empty}}); err != nil {
		fatal(err)
	}
	return time.Since(t0)
}

// benchCreates creates n sandboxes of tmpl one after another, each running
// `echo hi` to its end, and returns the durations; the sandboxes are killed
// as it goes.
func benchCreates(ctx context.Context, c *client.Client, tmpl string, n int) []time.Duration {
	var out []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		sb := must(c.CreateSandbox(ctx, client.CreateOptions{Template: tmpl}))
		var o strings.Builder
		code, err := sb.Exec(ctx, client.ExecOptions{Cmd: "echo", Args: []string{"hi"}, Stdout: &o})
		d := time.Since(t0)
		if err != nil || code != 0 || o.String() != "hi\n" {
			fatalf("echo hi in %s: %d %v %q", tmpl, code, err, o.String())
		}
		out = append(out, d)
		if err := sb.Kill(ctx); err != nil {
			fatal(err)
		}
	}
	return out
}

// diskPerSandbox holds k sandboxes of tmpl at once and reports what they
// add on disk: the blocks allocated under each sandbox's directory (its
// disk image and bundle), the template's own blocks before and after
// (unchanged: nothing is copied), and whether every sandbox's overlay has
// the template's rootfs as its lower layer.
func diskPerSandbox(ctx context.Context, srv *harness.Server, c *client.Client, tmpl string, k int) (perSandbox int64, tplBefore, tplAfter int64, shared bool) {
	tplDir := filepath.Join(harness.TemplatesDir(), tmpl, "rootfs")
	tplBefore = blocks(tplDir)
	var sbs []*client.Sandbox
	for i := 0; i < k; i++ {
		sb := must(c.CreateSandbox(ctx, client.CreateOptions{Template: tmpl}))
		must(sb.Run(ctx, "echo hi > /tmp/x", nil))
		sbs = append(sbs, sb)
	}
	unix.Sync()
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	shared = true
	var total int64
	for _, sb := range sbs {
		total += blocks(filepath.Join(srv.DataDir, "sandboxes", sb.ID))
		if !lowerIs(string(mounts), filepath.Join(srv.DataDir, "sandboxes", sb.ID, "rootfs"), tplDir) {
			shared = false
		}
	}
	tplAfter = blocks(tplDir)
	for _, sb := range sbs {
		sb.Kill(ctx)
	}
	return total / int64(k), tplBefore, tplAfter, shared
}

// lowerIs reports whether the overlay mounted at target has lower as its
// (only) lower layer, from mountinfo's super options.
func lowerIs(mountinfo, target, lower string) bool {
	for _, l := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || f[4] != target {
			continue
		}
		return strings.Contains(l, "lowerdir="+lower+",") || strings.HasSuffix(l, "lowerdir="+lower)
	}
	return false
}

// blocks sums the bytes allocated to the files under root (hard links
// once), the way du counts.
func blocks(root string) int64 {
	type ino struct{ dev, ino uint64 }
	seen := map[ino]bool{}
	var total int64
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			return nil
		}
		if d.IsDir() && p != root && st.Dev != devOf(root) {
			return fs.SkipDir // a mount (the sandbox's disk or rootfs) is counted by its image file
		}
		k := ino{uint64(st.Dev), st.Ino}
		if seen[k] {
			return nil
		}
		seen[k] = true
		total += st.Blocks * 512
		return nil
	})
	return total
}

func devOf(p string) uint64 {
	var st unix.Stat_t
	unix.Stat(p, &st)
	return uint64(st.Dev)
}

func filesSection(ctx context.Context, c *client.Client, size int64, reps, small int) {
	sb := must(c.CreateSandbox(ctx, client.CreateOptions{}))
	defer sb.Kill(ctx)
	up, down := benchTransfer(ctx, sb, size, reps)
	rt := benchSmallFiles(ctx, sb, small)
	fmt.Printf("\n| files (Go SDK → sbx serve → agent) | n | p50 | p99 | throughput (p50) |\n|---|---|---|---|---|\n")
	fmt.Printf("| upload %d MiB (`WriteFile`) | %d | %s | %s | %s |\n", size>>20, len(up), ms(pct(up, 50)), ms(pct(up, 99)), rate(size, up))
	fmt.Printf("| download %d MiB (`OpenFile`, read to the end) | %d | %s | %s | %s |\n", size>>20, len(down), ms(pct(down, 50)), ms(pct(down, 99)), rate(size, down))
	fmt.Printf("| 1 KiB write + read round trip | %d | %s | %s | – |\n", len(rt), ms(pct(rt, 50)), ms(pct(rt, 99)))
}

func templatesSection(ctx context.Context, srv *harness.Server, c *client.Client, n int) {
	name := fmt.Sprintf("bench-import-%d", os.Getpid())
	took := importBaseCopy(ctx, c, name)
	defer c.DeleteTemplate(context.Background(), name)
	for _, t := range []string{"base", name} { // warm up both
		benchCreates(ctx, c, t, 3)
	}
	// Interleaved in blocks, so that a busy moment hits both alike.
	var base, imp []time.Duration
	for len(base) < n {
		k := min(10, n-len(base))
		base = append(base, benchCreates(ctx, c, "base", k)...)
		imp = append(imp, benchCreates(ctx, c, name, k)...)
	}
	fmt.Printf("\n| create → `echo hi` done, by template | n | p50 | p99 |\n|---|---|---|---|\n")
	fmt.Printf("| base (built by debootstrap) | %d | %s | %s |\n", len(base), ms(pct(base, 50)), ms(pct(base, 99)))
	fmt.Printf("| imported (the same files as an OCI layout, imported in %s) | %d | %s | %s |\n", took.Round(time.Millisecond), len(imp), ms(pct(imp, 50)), ms(pct(imp, 99)))
	const k = 10
	fmt.Printf("\n| disk, %d sandboxes held, each wrote a file | added per sandbox (its disk image, bundle) | template on disk before → after | every overlay's lower layer is the template's one rootfs |\n|---|---|---|---|\n", k)
	for _, t := range []string{"base", name} {
		per, before, after, shared := diskPerSandbox(ctx, srv, c, t, k)
		label := "base"
		if t != "base" {
			label = "imported"
		}
		fmt.Printf("| %s | %.2f MiB | %.1f MiB → %.1f MiB | %v |\n", label, mib(per), mib(before), mib(after), shared)
	}
}
