// Package pgtest gives tests a real PostgreSQL database of their own.
//
// # Overview
//
// [Postgres] starts, once per machine, a private PostgreSQL 15 cluster
// (Debian's binaries, installed by scripts/setup.sh) in a cache directory,
// listening on a unix socket only, and leaves it running for later tests:
// when it is already up a call costs a connection and a CREATE DATABASE.
// Each call makes a new, empty database and drops it when the test ends.
// Test processes racing to start the cluster take turns on a lock file.
//
// # Usage
//
//	dsn := pgtest.Postgres(t) // postgres://postgres@/t_…?host=…
//	db, err := store.Open(ctx, dsn)
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// binDir returns where Debian's postgresql package put the server
// binaries: /usr/lib/postgresql/15/bin on Debian 12, the newest version's
// on other releases (Ubuntu 24.04 has 16).
func binDir() string {
	const preferred = "/usr/lib/postgresql/15/bin"
	if _, err := os.Stat(preferred); err == nil {
		return preferred
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestV := preferred, 0
	for _, d := range dirs {
		if v, err := strconv.Atoi(filepath.Base(filepath.Dir(d))); err == nil && v > bestV {
			best, bestV = d, v
		}
	}
	return best
}

// DefaultDir is the cluster's cache directory; SBX_TEST_PGDIR overrides it.
const DefaultDir = "/var/cache/sbx-test/postgres"

// Postgres returns the store URL of a fresh, empty database on the test
// cluster, starting the cluster first if it is not running. The database is
// dropped when the test ends. Missing binaries fail the test with how to
// install them.
func Postgres(t testing.TB) string {
	t.Helper()
	c, err := cluster(t)
	if err != nil {
		t.Fatalf("test postgres: %v", err)
	}
	name := "t_" + randomHex(8)
	admin, err := sql.Open("pgx", c.url("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("test postgres: create database: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", c.url("postgres"))
		if err != nil {
			t.Logf("test postgres: drop %s: %v", name, err)
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("test postgres: drop %s: %v", name, err)
		}
	})
	return c.url(name)
}

// testCluster is the running test cluster.
type testCluster struct {
	dir  string // the cache directory
	bin  string // the directory of the server binaries
	sock string // the unix socket's directory
}

// url returns the store URL of database name on the cluster.
func (c testCluster) url(name string) string {
	return "postgres://postgres@/" + name + "?sslmode=disable&connect_timeout=10&host=" + url.QueryEscape(c.sock)
}

// cluster makes sure the test cluster runs, and returns it.
func cluster(t testing.TB) (testCluster, error) {
	bin := binDir()
	for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return testCluster{}, fmt.Errorf("%s missing (%v): run scripts/setup.sh, which installs Debian's postgresql package", b, err)
		}
	}
	dir := os.Getenv("SBX_TEST_PGDIR")
	if dir == "" {
		dir = DefaultDir
	}
	c := testCluster{dir: dir, bin: bin, sock: filepath.Join(dir, "sock")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return c, err
	}
	// The postgres user must pass through the cache directory's parent,
	// which another test may have made first, private to root.
	if err := traversable(filepath.Dir(dir)); err != nil {
		return c, err
	}
	// The lock makes test processes that find the cluster down take turns
	// at starting it; the one that waited then finds it up.
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return c, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return c, fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	if c.up() {
		return c, nil
	}
	// Postgres refuses to run as root: as root, the cluster belongs to
	// the postgres user that Debian's package creates.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return c, fmt.Errorf("user postgres: %w (run scripts/setup.sh)", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// One data directory per major version: a cluster's files are not
	// readable by another version's server.
	data := filepath.Join(dir, "data-"+filepath.Base(filepath.Dir(bin)))
	for _, d := range []string{dir, data, c.sock} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return c, err
		}
		if cred != nil {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				return c, err
			}
		}
	}
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		// Trust authentication is safe here only because the server
		// listens on no TCP address and its socket's directory is
		// private to the cluster's user (and root).
		if err := c.run(cred, "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
			return c, err
		}
	}
	opts := fmt.Sprintf("-c listen_addresses='' -k %s -c unix_socket_permissions=0700 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300", c.sock)
	if err := c.run(cred, "pg_ctl", "start", "-w", "-t", "120", "-D", data, "-l", filepath.Join(dir, "postgres.log"), "-o", opts); err != nil {
		return c, err
	}
	if !c.up() {
		return c, fmt.Errorf("started, but not answering on %s (see %s)", c.sock, filepath.Join(dir, "postgres.log"))
	}
	t.Logf("test postgres: started the cluster in %s", dir)
	return c, nil
}

// up reports whether the cluster answers.
func (c testCluster) up() bool {
	db, err := sql.Open("pgx", c.url("postgres"))
	if err != nil {
		return false
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return db.PingContext(ctx) == nil
}

// run runs a PostgreSQL binary as cred (nil: as this process). Its output
// goes to a file, not a pipe: the server that pg_ctl leaves running would
// hold a pipe open and keep go test waiting.
func (c testCluster) run(cred *syscall.Credential, name string, args ...string) error {
	out, err := os.CreateTemp("", "pgtest-*.log")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	if cred != nil {
		if err := out.Chown(int(cred.Uid), int(cred.Gid)); err != nil {
			return err
		}
	}
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setsid: true}
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		return fmt.Errorf("%s: %w\n%s", name, err, b)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// traversable lets every user pass through dir (o+x), keeping its other
// permission bits: listing it stays as private as it was.
func traversable(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o011 != 0o011 {
		if err := os.Chmod(dir, perm|0o011); err != nil {
			return fmt.Errorf("let postgres through %s: %w", dir, err)
		}
	}
	return nil
}
