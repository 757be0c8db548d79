// Package disk gives sandboxes disks of their own with a quota: sparse
// ext4 images, loop-mounted, handed out by a Pool that keeps some ready.
//
// Threat: a sandbox filling the host's disk (its writes land in its overlay
// upper layer), taking sbx's own database and every other sandbox down with
// it. Each sandbox's upper layer therefore lives on a filesystem of its own:
// a sparse file of the quota's size, formatted ext4 and loop-mounted. A full
// sandbox gets ENOSPC inside and nothing outside changes. Sparse files cost
// only what is written (plus a few MiB of ext4 metadata).
//
// Formatting and mounting are too slow to do on every create, so a small
// pool keeps disks ready: a create takes one (moving its mount into the
// sandbox's directory), and the pool makes the next one in the background.
package disk

import (
	"bytes"
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

const (
	// diskDir holds the disks of the pool (DataDir/disks).
	diskDir = "disks"
	// Image and MountDir are a sandbox's disk, in its directory: the
	// image file and where it is mounted.
	Image    = "disk.img"
	MountDir = "disk"
)

// Pool makes and hands out quota'd disks. One filler goroutine keeps
// size disks ready; the disks of killed sandboxes come back wiped, up to
// keep of them (a fork's worth), so a steady create/kill cycle, or forks
// killed and made again, format nothing.
type Pool struct {
	dir    string
	sizeMB int64
	size   int
	log    *slog.Logger
	ready  chan *Disk
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

// Disk is an image file and the directory it is mounted on.
type Disk struct {
	image, mount string
}

// refillDelay lets disks of sandboxes being killed come back before the
// filler formats new ones.
const refillDelay = 300 * time.Millisecond

// NewPool returns a pool of disks of sizeMB under dataDir/disks that keeps
// size disks ready and takes back up to keep of killed sandboxes'. Disks an
// earlier run left there are destroyed.
func NewPool(dataDir string, sizeMB int64, size, keep int, log *slog.Logger) (*Pool, error) {
	p := &Pool{
		dir:    filepath.Join(dataDir, diskDir),
		sizeMB: sizeMB,
		size:   size,
		log:    log,
		ready:  make(chan *Disk, max(size, keep)),
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
			if err := UnmountAll(d); err != nil {
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

func (p *Pool) signal() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// fill makes disks until size are ready, each time it is kicked.
func (p *Pool) fill() {
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
			d, err := p.make(context.Background(), true)
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
func (p *Pool) put(d *Disk) bool {
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
	if err := d.Destroy(); err != nil {
		p.log.Error("disk pool: destroy spare disk", "err", err)
	}
	return false
}

// Take returns a ready disk, or makes one when none is.
func (p *Pool) Take(ctx context.Context) (*Disk, error) {
	defer p.signal()
	select {
	case d := <-p.ready:
		return d, nil
	default:
	}
	return p.make(ctx, false)
}

// Recycle takes back the disk of a sandbox being released (dir/disk.img on
// dir/disk, its overlay already unmounted): it moves it out of dir at once,
// then wipes it and makes it ready in the background. It returns false when
// the disk stayed in dir (the caller destroys it).
func (p *Pool) Recycle(dir string) bool {
	p.mu.Lock()
	if p.closed || len(p.ready) >= cap(p.ready) {
		p.mu.Unlock()
		return false
	}
	p.wiping.Add(1) // before close can wait for it
	p.mu.Unlock()
	sd := &Disk{image: filepath.Join(dir, Image), mount: filepath.Join(dir, MountDir)}
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
			d.Destroy()
			return
		}
		p.put(d)
	}()
	return true
}

func (p *Pool) newBase() string {
	b := make([]byte, 8)
	rand.Read(b)
	return filepath.Join(p.dir, hex.EncodeToString(b))
}

// make formats and mounts a new disk. In the background (the pool's own
// refill, which no caller waits for) the formatting runs at the lowest CPU
// priority, behind the creates it would otherwise slow.
func (p *Pool) make(ctx context.Context, background bool) (*Disk, error) {
	base := p.newBase()
	// No journal (a sandbox's disk does not outlive a host crash as a
	// consistent thing anyway: the box dies with the host).
	d, err := create(ctx, base+".img", base, p.sizeMB, false, background)
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(d.mount, sub), 0o755); err != nil {
			d.Destroy()
			return nil, fmt.Errorf("disk layout: %w", err)
		}
	}
	os.RemoveAll(filepath.Join(d.mount, "lost+found"))
	return d, nil
}

// Create makes a new disk of sizeMB: a sparse ext4 image at image,
// mounted on directory mount (made here; it must not exist). Unlike a
// sandbox's disk, it keeps a journal: it is for data that outlives
// sandboxes and host crashes (volumes).
func Create(ctx context.Context, image, mount string, sizeMB int64) (*Disk, error) {
	d, err := create(ctx, image, mount, sizeMB, true, false)
	if err != nil {
		return nil, err
	}
	os.RemoveAll(filepath.Join(d.mount, "lost+found"))
	return d, nil
}

// create formats and mounts a disk; a journal keeps its files
// consistent through host crashes, background formats at the lowest CPU
// priority.
func create(ctx context.Context, image, mount string, sizeMB int64, journal, background bool) (*Disk, error) {
	d := &Disk{image: image, mount: mount}
	f, err := os.OpenFile(d.image, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create disk image: %w", err)
	}
	err = f.Truncate(sizeMB << 20)
	f.Close()
	if err != nil {
		os.Remove(d.image)
		return nil, fmt.Errorf("size disk image: %w", err)
	}
	// No reserved blocks (the quota is all the user's), lazy inode
	// tables: formatting writes as little as it can.
	args := []string{"-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,nodiscard"}
	if !journal {
		args = append(args, "-O", "^has_journal")
	}
	mkfs := exec.CommandContext(ctx, "mkfs.ext4", append(args, d.image)...)
	var out bytes.Buffer
	mkfs.Stdout, mkfs.Stderr = &out, &out
	err = mkfs.Start()
	if err == nil {
		if background {
			_ = unix.Setpriority(unix.PRIO_PROCESS, mkfs.Process.Pid, 19)
		}
		err = mkfs.Wait()
	}
	if err != nil {
		os.Remove(d.image)
		return nil, fmt.Errorf("format disk: %v: %s", err, strings.TrimSpace(out.String()))
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
	return d, nil
}

// Open returns the disk of image mounted on directory mount, mounting it
// unless it is mounted already (after a host restart it is not).
func Open(image, mount string) (*Disk, error) {
	d := &Disk{image: image, mount: mount}
	if Mounted(d.mount) {
		return d, nil
	}
	if err := os.MkdirAll(d.mount, 0o711); err != nil {
		return nil, fmt.Errorf("disk mount point: %w", err)
	}
	if err := mountDisk(d.image, d.mount); err != nil {
		return nil, err
	}
	return d, nil
}

// MoveInto moves the disk into sandbox directory dir (dir/disk.img, mounted
// on dir/disk) and returns the sandbox's disk.
func (d *Disk) MoveInto(dir string) (*Disk, error) {
	return d.moveTo(filepath.Join(dir, Image), filepath.Join(dir, MountDir))
}

// move moves the disk to base.img mounted on base.
func (d *Disk) move(base string) (*Disk, error) { return d.moveTo(base+".img", base) }

func (d *Disk) moveTo(image, mount string) (*Disk, error) {
	nd := &Disk{image: image, mount: mount}
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

// Destroy unmounts the disk and deletes its image.
func (d *Disk) Destroy() error {
	if err := UnmountAll(d.mount); err != nil {
		return err
	}
	os.Remove(d.mount)
	return os.Remove(d.image)
}

// Close stops refilling and destroys the ready disks.
func (p *Pool) Close() {
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
			d.Destroy()
		default:
			return
		}
	}
}

// UnmountAll detaches whatever is mounted on path, however many times.
func UnmountAll(path string) error {
	for i := 0; i < 8 && Mounted(path); i++ {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	if Mounted(path) {
		return fmt.Errorf("%s is still mounted", path)
	}
	return nil
}

// Mount is the directory the disk is mounted on.
func (d *Disk) Mount() string { return d.mount }

// MountIn loop-mounts the disk in sandbox directory dir (dir/disk.img on
// dir/disk) unless it is mounted already (after a host restart it is not),
// and returns it.
func MountIn(dir string) (*Disk, error) {
	d := &Disk{image: filepath.Join(dir, Image), mount: filepath.Join(dir, MountDir)}
	if Mounted(d.mount) {
		return d, nil
	}
	if err := os.MkdirAll(d.mount, 0o711); err != nil {
		return nil, fmt.Errorf("disk mount point: %w", err)
	}
	// The same options as a new disk: nothing on it is trusted by the host.
	if err := mountDisk(d.image, d.mount); err != nil {
		return nil, err
	}
	return d, nil
}

// Mounted reports whether path is a mount point, by comparing its device
// with its parent's (overlay mounts get their own device number).
func Mounted(path string) bool {
	var st, pst unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false
	}
	if err := unix.Lstat(filepath.Dir(path), &pst); err != nil {
		return false
	}
	return st.Dev != pst.Dev
}
