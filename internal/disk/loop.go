package disk

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// loFlagsAutoclear: the loop device lets go
// of its file when the last user closes it, which for a mounted file system
// is the unmount.
const loFlagsAutoclear = unix.LO_FLAGS_AUTOCLEAR

// mountDisk attaches disk image to a free loop device and mounts its ext4
// file system on dir. The device is autoclear, so the unmount releases it
// and nothing else has to track it (as `mount -o loop` does; this does it
// directly because util-linux's loop set-up refuses on some hosts where the
// kernel is happy, such as an initramfs root).
//
// nodev, nosuid: nothing on a sandbox's disk is trusted by the host.
func mountDisk(image, dir string) error {
	f, err := os.OpenFile(image, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open disk image: %w", err)
	}
	defer f.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loop devices unavailable: %w", err)
	}
	defer ctl.Close()
	// Another process may take the free device between GET_FREE and
	// CONFIGURE; the kernel then answers EBUSY and we ask again.
	for range 32 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return fmt.Errorf("find a free loop device: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		lf, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", dev, err)
		}
		cfg := unix.LoopConfig{Fd: uint32(f.Fd())}
		cfg.Info.Flags = loFlagsAutoclear
		copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], image)
		if err := unix.IoctlLoopConfigure(int(lf.Fd()), &cfg); err != nil {
			lf.Close()
			if errors.Is(err, unix.EBUSY) {
				continue
			}
			return fmt.Errorf("attach %s to %s: %w", image, dev, err)
		}
		err = unix.Mount(dev, dir, "ext4", unix.MS_NODEV|unix.MS_NOSUID|unix.MS_NOATIME, "discard")
		// The mount holds the device now; closing ours lets autoclear
		// detach it on unmount (or right away if the mount failed).
		lf.Close()
		if err != nil {
			return fmt.Errorf("mount %s (%s) on %s: %w", dev, image, dir, err)
		}
		return nil
	}
	return errors.New("no free loop device after 32 tries")
}
