package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// WeedBin is where scripts/setup.sh installs SeaweedFS's weed, the
// S3-compatible server the tests use.
const WeedBin = "/usr/local/lib/sbx/weed"

// The test S3 server: one per machine, on fixed loopback ports below the
// ephemeral range (so that no server a test starts on port 0 takes them),
// with one identity whose keys the tests sign with.
const (
	S3AccessKey = "sbxtest"
	S3SecretKey = "sbxtest-secret-key"

	s3Port     = 18333
	masterPort = 19333
	volumePort = 18080
	filerPort  = 18888
)

// S3Dir is the directory of the test S3 server's data, identity config
// and log (SBX_TEST_S3_DIR, default /var/cache/sbx-test/s3).
func S3Dir() string {
	if d := os.Getenv("SBX_TEST_S3_DIR"); d != "" {
		return d
	}
	return "/var/cache/sbx-test/s3"
}

// S3 makes sure the machine's test S3 server (SeaweedFS) runs, starting it
// if needed, and returns its endpoint, a new empty bucket for this test and
// the keys to sign requests with. The server outlives the test process: the
// next test (or run) finds it up and pays only for a new bucket. It fails
// the test when weed is not installed.
func S3(t T) (endpoint, bucket, accessKey, secretKey string) {
	t.Helper()
	endpoint = "http://127.0.0.1:" + strconv.Itoa(s3Port)
	if err := ensureS3(endpoint); err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	rand.Read(b[:])
	bucket = "test-" + hex.EncodeToString(b[:])
	c, err := minio.New("127.0.0.1:"+strconv.Itoa(s3Port), &minio.Options{
		Creds:        credentials.NewStaticV4(S3AccessKey, S3SecretKey, ""),
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make test bucket on %s: %v (server log: %s)", endpoint, err, filepath.Join(S3Dir(), "weed.log"))
	}
	// A server that has just started answers before its volume server has
	// registered: writes fail until then.
	for {
		_, err := c.PutObject(ctx, bucket, ".probe", strings.NewReader("ok"), 2, minio.PutObjectOptions{})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("test S3 server on %s takes no writes: %v (server log: %s)", endpoint, err, filepath.Join(S3Dir(), "weed.log"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err := c.RemoveObject(ctx, bucket, ".probe", minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for o := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
			if o.Err == nil {
				c.RemoveObject(ctx, bucket, o.Key, minio.RemoveObjectOptions{})
			}
		}
		c.RemoveBucket(ctx, bucket)
	})
	return endpoint, bucket, S3AccessKey, S3SecretKey
}

// ensureS3 starts weed unless it answers at endpoint, under a flock so
// that test processes starting at once start one server.
func ensureS3(endpoint string) error {
	if s3Up(endpoint) {
		return nil
	}
	if _, err := os.Stat(WeedBin); err != nil {
		return fmt.Errorf("SeaweedFS (weed) is not installed at %s; run scripts/setup.sh", WeedBin)
	}
	dir := S3Dir()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return err
	}
	lf, err := os.OpenFile(filepath.Join(dir, "start.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	if s3Up(endpoint) { // another process started it while we waited
		return nil
	}
	ident := fmt.Sprintf(`{"identities":[{"name":"sbxtest","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Admin","Read","Write","List","Tagging"]}]}`, S3AccessKey, S3SecretKey)
	conf := filepath.Join(dir, "s3.json")
	if err := os.WriteFile(conf, []byte(ident), 0o600); err != nil {
		return err
	}
	logPath := filepath.Join(dir, "weed.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(WeedBin, "server",
		"-dir="+filepath.Join(dir, "data"),
		"-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port="+strconv.Itoa(masterPort), "-master.port.grpc="+strconv.Itoa(masterPort+10000),
		"-master.volumeSizeLimitMB=1024",
		"-volume.port="+strconv.Itoa(volumePort), "-volume.port.grpc="+strconv.Itoa(volumePort+10000),
		"-volume.max=100",
		"-filer", "-filer.port="+strconv.Itoa(filerPort), "-filer.port.grpc="+strconv.Itoa(filerPort+10000),
		"-s3", "-s3.port="+strconv.Itoa(s3Port), "-s3.port.grpc="+strconv.Itoa(s3Port+10000), "-s3.config="+conf,
		// Iceberg and Lance catalogs would take ports of their own.
		"-s3.port.iceberg=0", "-s3.port.lance=0",
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: it serves every later test and run on this machine,
	// so neither this process's exit nor a Ctrl-C of the test ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", WeedBin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(2 * time.Minute)
	for !s3Up(endpoint) {
		select {
		case err := <-exited:
			return fmt.Errorf("weed server exited before its S3 API came up (%v); see %s", err, logPath)
		case <-deadline:
			return fmt.Errorf("weed server's S3 API not up on %s after 2 minutes; see %s", endpoint, logPath)
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// s3Up reports whether an S3 API answers at endpoint: any HTTP answer to
// an unsigned request (SeaweedFS refuses it with 403 once identities are
// configured) means it is up.
func s3Up(endpoint string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(endpoint + "/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}
