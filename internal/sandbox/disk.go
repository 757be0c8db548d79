package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Disk quotas.
//
// Threat: a sandbox filling the host's disk (its writes land in its overlay
// upper layer), taking sbx's own database and every other sandbox down with
// it. Each sandbox's upper layer therefore lives on a filesystem of its own:
// a sparse file of the quota's size, formatted ext4 and loop-mounted. A full
// sandbox gets ENOSPC inside and nothing outside changes. Sparse files cost
// only what is written (plus a few MiB of ext4 metadata).
//
// Formatting and mounting are too slow to do on every create, so a small
// pool keeps disks ready: a create takes one (moving its mount into the sandbox's
// directory), and the pool makes the next one in the background.

const (
	// diskDir holds the disks of the pool (DataDir/disks).
	diskDir = "disks"
	// diskImage and diskMount are a sandbox's disk, in its directory.
	diskImage = "disk.img"
	diskMount = "disk"
)

// diskPool makes and hands out quota'd disks. One filler goroutine keeps
// size disks ready; the disks of killed sandboxes come back wiped, up to
// keep of them (a fork's worth), so a steady create/kill cycle, or forks
// killed and made again, format nothing.
type diskPool struct {
	dir    string
	sizeMB int64
	size   int
	log    *slog.Logger
	ready  chan *disk
	kick   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once

	// mu orders put against close: once closed, no disk joins ready
	// (close destroys those there), so none is left mounted.
	mu     sync.Mutex
	closed bool
	// wiping counts recycled disks being wiped, which close waits for.
	wiping sync.WaitGroup
}

// disk is an image file and the directory it is mounted on.
type disk struct {
	image, mount string
}

// refillDelay lets disks of sandboxes being killed come back before the
// filler formats new ones.
const refillDelay = 300 * time.Millisecond

func newDiskPool(dataDir string, sizeMB int64, size, keep int, log *slog.Logger) (*diskPool, error) {
	p := &diskPool{
		dir:    filepath.Join(dataDir, diskDir),
		sizeMB: sizeMB,
		size:   size,
		log:    log,
		ready:  make(chan *disk, max(size, keep)),
		kick:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if err := os.MkdirAll(p.dir, 0o711); err != nil {
		return nil, fmt.Errorf("disk pool: %w", err)
	}
	// Disks made by an earlier run and never handed out are not in use.
	entries, _ := os.ReadDir(p.dir)
	for _, e := range entries {
		d := filepath.Join(p.dir, e.Name())
		if e.IsDir() {
			if err := unmountAll(d); err != nil {
				log.Error("disk pool: unmount leftover", "path", d, "err", err)
				continue
			}
		}
		os.RemoveAll(d)
	}
	go p.fill()
	p.signal()
	return p, nil
}

func (p *diskPool) signal() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// fill makes disks until size are ready, each time it is kicked.
func (p *diskPool) fill() {
	defer close(p.done)
	first := true
	for {
		select {
		case <-p.stop:
			return
		case <-p.kick:
		}
		if !first {
			select {
			case <-p.stop:
				return
			case <-time.After(refillDelay):
			}
		}
		first = false
		for len(p.ready) < p.size {
			d, err := p.make(context.Background())
			if err != nil {
				p.log.Error("disk pool: make disk", "err", err)
				break
			}
			if !p.put(d) {
				break
			}
		}
	}
}

// put adds d to the ready disks, or destroys it when enough are ready.
func (p *diskPool) put(d *disk) bool {
	p.mu.Lock()
	if !p.closed {
		select {
		case p.ready <- d:
			p.mu.Unlock()
			return true
		default:
		}
	}
	p.mu.Unlock()
	if err := d.destroy(); err != nil {
		p.log.Error("disk pool: destroy spare disk", "err", err)
	}
	return false
}

// take returns a ready disk, or makes one when none is.
func (p *diskPool) take(ctx context.Context) (*disk, error) {
	defer p.signal()
	select {
	case d := <-p.ready:
		return d, nil
	default:
	}
	return p.make(ctx)
}

// recycle takes back the disk of a sandbox being released (dir/disk.img on
// dir/disk, its overlay already unmounted): it moves it out of dir at once,
// then wipes it and makes it ready in the background. It returns false when
// the disk stayed in dir (the caller destroys it).
func (p *diskPool) recycle(dir string) bool {
	p.mu.Lock()
	if p.closed || len(p.ready) >= cap(p.ready) {
		p.mu.Unlock()
		return false
	}
	p.wiping.Add(1) // before close can wait for it
	p.mu.Unlock()
	sd := &disk{image: filepath.Join(dir, diskImage), mount: filepath.Join(dir, diskMount)}
	d, err := sd.move(p.newBase())
	if err != nil {
		p.wiping.Done()
		p.log.Warn("disk pool: recycle", "err", err)
		return false
	}
	go func() {
		defer p.wiping.Done()
		// Everything the sandbox wrote goes; the filesystem's free
		// blocks hold no readable data for the next sandbox (it has no
		// access to the device), and discard returns them to the host.
		err := errors.Join(os.RemoveAll(filepath.Join(d.mount, "upper")), os.RemoveAll(filepath.Join(d.mount, "work")))
		if err == nil {
			err = errors.Join(os.Mkdir(filepath.Join(d.mount, "upper"), 0o755), os.Mkdir(filepath.Join(d.mount, "work"), 0o755))
		}
		if err != nil {
			p.log.Warn("disk pool: wipe recycled disk", "err", err)
			d.destroy()
			return
		}
		p.put(d)
	}()
	return true
}

func (p *diskPool) newBase() string {
	b := make([]byte, 8)
	rand.Read(b)
	return filepath.Join(p.dir, hex.EncodeToString(b))
}

// make formats and mounts a new disk.
func (p *diskPool) make(ctx context.Context) (*disk, error) {
	base := p.newBase()
	d := &disk{image: base + ".img", mount: base}
	f, err := os.OpenFile(d.image, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create disk image: %w", err)
	}
	err = f.Truncate(p.sizeMB << 20)
	f.Close()
	if err != nil {
		os.Remove(d.image)
		return nil, fmt.Errorf("size disk image: %w", err)
	}
	// No journal (a sandbox's disk does not outlive a host crash as a
	// consistent thing anyway: the box dies with the host), no reserved
	// blocks, lazy inode tables: formatting writes as little as it can.
	if out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
		"-E", "lazy_itable_init=1,nodiscard", d.image).CombinedOutput(); err != nil {
		os.Remove(d.image)
		return nil, fmt.Errorf("format disk: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if err := os.Mkdir(d.mount, 0o711); err != nil {
		os.Remove(d.image)
		return nil, fmt.Errorf("disk mount point: %w", err)
	}
	if err := mountDisk(d.image, d.mount); err != nil {
		os.Remove(d.mount)
		os.Remove(d.image)
		return nil, err
	}
	for _, sub := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(d.mount, sub), 0o755); err != nil {
			d.destroy()
			return nil, fmt.Errorf("disk layout: %w", err)
		}
	}
	os.RemoveAll(filepath.Join(d.mount, "lost+found"))
	return d, nil
}

// moveInto moves the disk into sandbox directory dir (dir/disk.img, mounted
// on dir/disk) and returns the sandbox's disk.
func (d *disk) moveInto(dir string) (*disk, error) {
	return d.moveTo(filepath.Join(dir, diskImage), filepath.Join(dir, diskMount))
}

// move moves the disk to base.img mounted on base.
func (d *disk) move(base string) (*disk, error) { return d.moveTo(base+".img", base) }

func (d *disk) moveTo(image, mount string) (*disk, error) {
	nd := &disk{image: image, mount: mount}
	if err := os.Mkdir(nd.mount, 0o711); err != nil {
		return nil, fmt.Errorf("disk mount point: %w", err)
	}
	if err := unix.Mount(d.mount, nd.mount, "", unix.MS_MOVE, ""); err != nil {
		os.Remove(nd.mount)
		return nil, fmt.Errorf("move disk mount: %w", err)
	}
	os.Remove(d.mount)
	// The loop device keeps the open file; the name only matters to us.
	if err := os.Rename(d.image, nd.image); err != nil {
		return nil, fmt.Errorf("move disk image: %w", err)
	}
	return nd, nil
}

// destroy unmounts the disk and deletes its image.
func (d *disk) destroy() error {
	if err := unmountAll(d.mount); err != nil {
		return err
	}
	os.Remove(d.mount)
	return os.Remove(d.image)
}

// close stops refilling and destroys the ready disks.
func (p *diskPool) close() {
	p.once.Do(func() { close(p.stop) })
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
	// Disks being wiped end up in put, which destroys them from now on.
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	wiped := make(chan struct{})
	go func() { p.wiping.Wait(); close(wiped) }()
	select {
	case <-wiped:
	case <-time.After(10 * time.Second):
	}
	for {
		select {
		case d := <-p.ready:
			d.destroy()
		default:
			return
		}
	}
}

// unmountAll detaches whatever is mounted on path, however many times.
func unmountAll(path string) error {
	for i := 0; i < 8 && mounted(path); i++ {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	if mounted(path) {
		return fmt.Errorf("%s is still mounted", path)
	}
	return nil
}
