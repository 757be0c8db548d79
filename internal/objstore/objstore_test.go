package objstore_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/objstore"
	"github.com/sbxdev/sbx/tests/harness"
)

func open(t *testing.T, prefix string) *objstore.Bucket {
	t.Helper()
	ep, bucket, ak, sk := harness.S3(t)
	b, err := objstore.Open(context.Background(), "s3://"+bucket+prefix+"?endpoint="+ep, objstore.Credentials{AccessKey: ak, SecretKey: sk})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	b := open(t, "/some/prefix")
	for _, k := range []string{"a/1", "a/2", "b/1"} {
		if err := b.Put(ctx, k, strings.NewReader("body of "+k), -1); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := b.Get(ctx, "a/2")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != "body of a/2" {
		t.Fatalf("Get a/2 = %q, %v", got, err)
	}
	st, err := b.Stat(ctx, "b/1")
	if err != nil || st.Size != int64(len("body of b/1")) || st.Key != "b/1" {
		t.Fatalf("Stat b/1 = %+v, %v", st, err)
	}
	list, err := b.List(ctx, "a/")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Key != "a/1" || list[1].Key != "a/2" {
		t.Fatalf("List a/ = %+v", list)
	}
	// Overwrite, then delete.
	if err := b.Put(ctx, "a/1", bytes.NewReader([]byte("new")), 3); err != nil {
		t.Fatal(err)
	}
	if st, err := b.Stat(ctx, "a/1"); err != nil || st.Size != 3 {
		t.Fatalf("Stat after overwrite = %+v, %v", st, err)
	}
	if err := b.Delete(ctx, "a/1"); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "a/1"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if list, err := b.List(ctx, ""); err != nil || len(list) != 2 {
		t.Fatalf("List after delete = %+v, %v", list, err)
	}
}

func TestPrefixIsolation(t *testing.T) {
	ctx := context.Background()
	ep, bucket, ak, sk := harness.S3(t)
	creds := objstore.Credentials{AccessKey: ak, SecretKey: sk}
	one, err := objstore.Open(ctx, "s3://"+bucket+"/one?endpoint="+ep, creds)
	if err != nil {
		t.Fatal(err)
	}
	two, err := objstore.Open(ctx, "s3://"+bucket+"/two?endpoint="+ep, creds)
	if err != nil {
		t.Fatal(err)
	}
	if err := one.Put(ctx, "k", strings.NewReader("1"), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := two.Stat(ctx, "k"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("a key under another prefix: %v, want ErrNotFound", err)
	}
	if l, err := two.List(ctx, ""); err != nil || len(l) != 0 {
		t.Fatalf("List of an empty prefix = %+v, %v", l, err)
	}
}

func TestMissingKey(t *testing.T) {
	ctx := context.Background()
	b := open(t, "")
	if _, err := b.Get(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Get of a missing key: %v, want ErrNotFound", err)
	}
	if _, err := b.Stat(ctx, "nope/deeper"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Stat of a missing key: %v, want ErrNotFound", err)
	}
	for _, k := range []string{"", "/abs", "a//b", "a/../b", "./a"} {
		if err := b.Put(ctx, k, strings.NewReader(""), 0); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Put %q: %v, want ErrInvalidArgument", k, err)
		}
	}
}

func TestMissingBucket(t *testing.T) {
	ep, _, ak, sk := harness.S3(t)
	_, err := objstore.Open(context.Background(), "s3://no-such-bucket-sbx?endpoint="+ep, objstore.Credentials{AccessKey: ak, SecretKey: sk})
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "no-such-bucket-sbx") {
		t.Fatalf("Open of a missing bucket: %v, want ErrNotFound naming it", err)
	}
}

func TestBadCredentials(t *testing.T) {
	ep, bucket, ak, _ := harness.S3(t)
	ctx := context.Background()
	for _, c := range []objstore.Credentials{{AccessKey: ak, SecretKey: "wrong"}, {AccessKey: "unknown", SecretKey: "wrong"}} {
		_, err := objstore.Open(ctx, "s3://"+bucket+"?endpoint="+ep, c)
		if !errors.Is(err, errdefs.ErrUnauthenticated) || !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY") {
			t.Errorf("Open with %+v: %v, want ErrUnauthenticated that names the variables", c, err)
		}
	}
	if _, err := objstore.Open(ctx, "s3://"+bucket+"?endpoint="+ep, objstore.Credentials{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Open without credentials: %v, want ErrInvalidArgument", err)
	}
}

func TestUnreachable(t *testing.T) {
	_, err := objstore.Open(context.Background(), "s3://bucket?endpoint=http://127.0.0.1:1", objstore.Credentials{AccessKey: "a", SecretKey: "b"})
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("Open of a closed port: %v, want ErrUnavailable", err)
	}
}

func TestParseURL(t *testing.T) {
	good := []struct{ in, bucket, prefix, host, region string }{
		{"s3://b?endpoint=http://127.0.0.1:8333", "b", "", "127.0.0.1:8333", "us-east-1"},
		{"s3://b/p/q/?endpoint=https://s3.example&region=eu-west-1", "b", "p/q", "s3.example", "eu-west-1"},
	}
	for _, g := range good {
		c, err := objstore.ParseURL(g.in)
		if err != nil || c.Bucket != g.bucket || c.Prefix != g.prefix || c.Endpoint.Host != g.host || c.Region != g.region {
			t.Errorf("ParseURL(%q) = %+v, %v", g.in, c, err)
		}
	}
	for _, in := range []string{
		"", "b", "http://b?endpoint=http://h", "s3://b", "s3://b?endpoint=ftp://h",
		"s3://b?endpoint=http://h/path", "s3://b?endpoint=http://h&secret=x", "s3://u:p@b?endpoint=http://h",
		"s3://b/../c?endpoint=http://h", "s3://b/a//c?endpoint=http://h",
	} {
		if _, err := objstore.ParseURL(in); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseURL(%q): %v, want ErrInvalidArgument", in, err)
		}
	}
}

// onceReader yields n bytes of a fixed pattern, once: it cannot seek, so
// Put can only stream it, and the digest of what the bucket holds shows
// that every byte went up exactly once, in order.
type onceReader struct {
	left int64
	i    byte
}

func (r *onceReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	for j := range p {
		p[j] = r.i
		r.i = r.i*31 + 7
	}
	r.left -= int64(len(p))
	return len(p), nil
}

// peakRSS is the process's high-water resident set (VmHWM), in bytes.
func peakRSS(t *testing.T) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}

func TestLargeObjectStreams(t *testing.T) {
	const size = 200 << 20
	ctx := context.Background()
	b := open(t, "")
	before := peakRSS(t)

	for _, n := range []int64{size, -1} { // known length, then unknown
		src := &onceReader{left: size}
		h := sha256.New()
		if err := b.Put(ctx, "big", io.TeeReader(src, h), n); err != nil {
			t.Fatal(err)
		}
		want := h.Sum(nil)
		st, err := b.Stat(ctx, "big")
		if err != nil || st.Size != size {
			t.Fatalf("Stat big = %+v, %v", st, err)
		}
		rc, err := b.Get(ctx, "big")
		if err != nil {
			t.Fatal(err)
		}
		g := sha256.New()
		m, err := io.Copy(g, rc)
		rc.Close()
		if err != nil || m != size || !bytes.Equal(g.Sum(nil), want) {
			t.Fatalf("Get big: %d bytes, %v; digest matches: %v", m, err, bytes.Equal(g.Sum(nil), want))
		}
	}
	// A buffered 200 MiB object would raise the peak by at least its size;
	// streaming in 16 MiB parts stays far below.
	if grew := peakRSS(t) - before; grew > 120<<20 {
		t.Fatalf("peak RSS grew by %d MiB for a %d MiB object: it was buffered", grew>>20, size>>20)
	}
}
