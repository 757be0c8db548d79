// Package volume keeps sbx's volumes: directories with a size quota that
// live until destroyed, that sandboxes mount (several at once) and that
// the volume-content API reads and writes with no sandbox running.
//
// # Overview
//
// Each volume is an ext4 image of its quota's size (a sparse file: it
// costs what is written) under DATA_DIR/volumes/ID/volume.img, loop-mounted
// once on the host at DATA_DIR/volumes/ID/data (package disk). Sandboxes
// get bind mounts of that directory, so writes in one are seen by the
// others and by the content API at once; a full volume is ENOSPC inside
// every sandbox, and its files survive sandbox kills, pauses, forks and
// server restarts (the image is mounted again on first use).
//
// Threat: a sandbox plants symlinks (or renames directories) in a volume
// it mounts, then asks the content API, which runs as host root, to follow
// them to the host's files or another volume's. Every content operation
// therefore resolves paths through an [os.Root] opened on the volume's
// mount: symlinks are followed only while they stay in the volume, and
// ".." never leaves it. The mount is nodev and nosuid (package disk), so
// nothing a sandbox writes there is a device or a setuid binary to the
// host.
//
// # Usage
//
//	vols, err := volume.New(volume.Config{DataDir: dir, DB: db, Logger: log})
//	v, token, err := vols.Create(ctx, "data", 0)
//	host, err := vols.Mount(ctx, v.ID) // what a sandbox bind-mounts
//	st, err := vols.WriteFile(ctx, v.ID, "/a/b.txt", body, volume.Owner{})
package volume

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/sbxdev/sbx/internal/atomicfile"
	"github.com/sbxdev/sbx/internal/disk"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
)

const (
	volumesDir = "volumes"
	imageName  = "volume.img"
	mountName  = "data"
	keyName    = "token.key"
	// tokenPrefix marks volume tokens, so that one pasted as an API key
	// (or the other way round) is recognisable in logs and reports.
	tokenPrefix = "sbxv_"
	// MinSizeMB is the smallest quota a volume may have: ext4's own
	// metadata needs a few MiB.
	MinSizeMB = 16
	// DefaultOwner is the uid and gid (as sandboxes see them) that the
	// content API gives files and directories when the request names none:
	// the templates' default user, so that sandboxes can use them.
	DefaultOwner = 1000
	// idRange is how many ids a sandbox's user namespace maps.
	idRange = 65536
)

// DB is what the volumes need of the store.
type DB interface {
	CreateVolume(ctx context.Context, v *store.Volume) error
	GetVolume(ctx context.Context, id string) (*store.Volume, error)
	GetVolumeByName(ctx context.Context, name string) (*store.Volume, error)
	ListVolumes(ctx context.Context) ([]*store.Volume, error)
	VolumeUsers(ctx context.Context, id string, over ...store.State) ([]string, error)
	DeleteVolume(ctx context.Context, id string) error
	CreateVolumeQuota(ctx context.Context, v *store.Volume, check func(t *store.Team, usedMB int64) error) error
	GetTeam(ctx context.Context, ref string) (*store.Team, error)
	TeamVolumeMB(ctx context.Context, team string) (int64, error)
}

// Config configures the volumes.
type Config struct {
	// DataDir is sbx's data directory; volumes live in DataDir/volumes.
	DataDir string
	DB      DB
	// DefaultSizeMB is the quota of a volume whose create names none;
	// MaxSizeMB bounds what a create may ask for.
	DefaultSizeMB int64
	MaxSizeMB     int64
	// IDShift is the host id of id 0 in sandboxes (0: no user
	// namespaces): files are owned by IDShift plus the sandbox's id.
	IDShift uint32
	// Over are the sandbox states in which a sandbox no longer holds its
	// volumes (killed, failed).
	Over   []store.State
	Logger *slog.Logger
}

// Manager keeps the volumes. It is safe for concurrent use.
type Manager struct {
	cfg Config
	dir string
	key []byte
	log *slog.Logger
	// mu orders mounts against destroys: a volume being destroyed is not
	// mounted again meanwhile.
	mu sync.Mutex
}

var (
	nameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,128}$`)
	idRE   = regexp.MustCompile(`^[a-z0-9]{20}$`)
)

// New returns the volume manager, creating its directory and token key.
func New(cfg Config) (*Manager, error) {
	if cfg.DefaultSizeMB == 0 {
		cfg.DefaultSizeMB = 1024
	}
	if cfg.MaxSizeMB == 0 {
		cfg.MaxSizeMB = 16384
	}
	if cfg.DefaultSizeMB < MinSizeMB || cfg.DefaultSizeMB > cfg.MaxSizeMB {
		return nil, fmt.Errorf("volumes: default size %d MiB is not between %d and the maximum %d", cfg.DefaultSizeMB, MinSizeMB, cfg.MaxSizeMB)
	}
	m := &Manager{cfg: cfg, dir: filepath.Join(cfg.DataDir, volumesDir), log: cfg.Logger}
	if err := os.MkdirAll(m.dir, 0o711); err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	key, err := loadKey(filepath.Join(m.dir, keyName))
	if err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	m.key = key
	return m, nil
}

// loadKey reads the key volume tokens are derived from, making it on first
// use. Tokens are HMACs of the volume id under this key rather than random
// values stored in the database: the API must hand a volume's token out
// again (GET /volumes/{id}), and the database then holds nothing that
// opens a volume.
func loadKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil {
		if len(key) != 32 {
			// Made again, it would change every volume's token.
			return nil, fmt.Errorf("token key %s: %d bytes, want 32", path, len(key))
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("token key: %w", err)
	}
	key = make([]byte, 32)
	rand.Read(key)
	if err := atomicfile.Write(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	return key, nil
}

// Token is volume id's token, which authorises its content routes.
func (m *Manager) Token(id string) string {
	h := hmac.New(sha256.New, m.key)
	h.Write([]byte("sbx volume token\x00" + id))
	return tokenPrefix + hex.EncodeToString(h.Sum(nil))
}

// Verify reports whether token is volume id's, in constant time.
func (m *Manager) Verify(id, token string) bool {
	return subtle.ConstantTimeCompare([]byte(m.Token(id)), []byte(token)) == 1
}

func newID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 20)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	b[0] = alphabet[int(b[0])%26]
	return string(b)
}

// ValidName reports whether name is a valid volume name.
func ValidName(name string) bool { return nameRE.MatchString(name) }

func (m *Manager) volDir(id string) string { return filepath.Join(m.dir, id) }

// Create makes a volume named name of sizeMB (0: the default).
func (m *Manager) Create(ctx context.Context, name string, sizeMB int64) (*store.Volume, error) {
	return m.CreateInTeam(ctx, store.DefaultTeamID, name, sizeMB)
}

// CreateInTeam is Create for a volume of team (a store id). Names are
// unique across teams.
func (m *Manager) CreateInTeam(ctx context.Context, team, name string, sizeMB int64) (*store.Volume, error) {
	if !ValidName(name) {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "volume name %q is invalid: 1 to 128 of a-z, A-Z, 0-9, '_' and '-'", name)
	}
	if sizeMB == 0 {
		sizeMB = m.cfg.DefaultSizeMB
	}
	if sizeMB < MinSizeMB || sizeMB > m.cfg.MaxSizeMB {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "sizeMB must be between %d and %d (the server's maximum)", MinSizeMB, m.cfg.MaxSizeMB)
	}
	if _, err := m.cfg.DB.GetVolumeByName(ctx, name); err == nil {
		return nil, errdefs.New(errdefs.ErrConflict, "a volume named %q exists", name)
	}
	if err := m.checkTeamBytes(ctx, team, sizeMB); err != nil {
		return nil, err
	}
	v := &store.Volume{ID: newID(), Name: name, SizeMB: sizeMB, CreatedAt: time.Now().UTC(), Team: team}
	dir := m.volDir(v.ID)
	if err := os.Mkdir(dir, 0o711); err != nil {
		return nil, fmt.Errorf("volume dir: %w", err)
	}
	d, err := disk.Create(ctx, filepath.Join(dir, imageName), filepath.Join(dir, mountName), sizeMB)
	if err != nil {
		os.RemoveAll(dir)
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "the volume's disk could not be made")
	}
	// The volume's root belongs to the sandboxes' default user, as the
	// files the content API writes do.
	uid, gid := m.hostID(DefaultOwner), m.hostID(DefaultOwner)
	if err := os.Chown(d.Mount(), int(uid), int(gid)); err != nil {
		d.Destroy()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("volume root: %w", err)
	}
	os.Chmod(d.Mount(), 0o755)
	// Checked again under the team's lock, with the insert: of racing
	// creates that both passed the check above, one is refused here.
	if err := m.cfg.DB.CreateVolumeQuota(ctx, v, func(t *store.Team, used int64) error {
		return volumeQuota(t, used, sizeMB)
	}); err != nil {
		d.Destroy()
		os.RemoveAll(dir)
		return nil, err
	}
	m.log.Info("volume created", "volume_id", v.ID, "name", name, "size_mb", sizeMB)
	return v, nil
}

// Get returns volume id (an error wrapping errdefs.ErrNotFound for an
// unknown or malformed id).
func (m *Manager) Get(ctx context.Context, id string) (*store.Volume, error) {
	if !idRE.MatchString(id) {
		return nil, errdefs.New(errdefs.ErrNotFound, "volume %q not found", id)
	}
	return m.cfg.DB.GetVolume(ctx, id)
}

// ByName returns the volume named name.
func (m *Manager) ByName(ctx context.Context, name string) (*store.Volume, error) {
	if !ValidName(name) {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "volume name %q is invalid", name)
	}
	return m.cfg.DB.GetVolumeByName(ctx, name)
}

// List returns every volume, oldest first.
func (m *Manager) List(ctx context.Context) ([]*store.Volume, error) {
	return m.cfg.DB.ListVolumes(ctx)
}

// Destroy deletes volume id and its files. A volume that a sandbox not
// yet killed (running, paused...) mounts is refused with
// errdefs.ErrConflict.
func (m *Manager) Destroy(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.Get(ctx, id); err != nil {
		return err
	}
	users, err := m.cfg.DB.VolumeUsers(ctx, id, m.cfg.Over...)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return errdefs.New(errdefs.ErrConflict, "volume %s is mounted by sandbox %s; kill the sandboxes that mount it first", id, users[0])
	}
	dir := m.volDir(id)
	if err := disk.UnmountAll(filepath.Join(dir, mountName)); err != nil {
		return fmt.Errorf("destroy volume %s: %w", id, err)
	}
	if err := m.cfg.DB.DeleteVolume(ctx, id); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		m.log.Error("remove volume files", "volume_id", id, "err", err)
	}
	m.log.Info("volume destroyed", "volume_id", id)
	return nil
}

// Mount returns the host directory of volume id, mounting its disk when it
// is not (after a host restart), for a sandbox to bind-mount.
func (m *Manager) Mount(ctx context.Context, id string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.Get(ctx, id); err != nil {
		return "", err
	}
	dir := m.volDir(id)
	d, err := disk.Open(filepath.Join(dir, imageName), filepath.Join(dir, mountName))
	if err != nil {
		return "", errdefs.Wrap(errdefs.ErrUnavailable, err, "volume %s could not be mounted", id)
	}
	return d.Mount(), nil
}

// hostID is the host id of sandbox id n.
func (m *Manager) hostID(n uint32) uint32 {
	if m.cfg.IDShift == 0 {
		return n
	}
	return m.cfg.IDShift + n
}

// boxID is the sandbox id of host id n.
func (m *Manager) boxID(n uint32) uint32 {
	if m.cfg.IDShift == 0 || n < m.cfg.IDShift {
		return n
	}
	return n - m.cfg.IDShift
}

// checkTeamBytes refuses a new volume of sizeMB for team when the team's
// volumes would pass its limit (max-volume-mb): 429, as the other quotas.
// It runs before the volume's disk is made; the insert checks again under
// the team's lock.
func (m *Manager) checkTeamBytes(ctx context.Context, team string, sizeMB int64) error {
	t, err := m.cfg.DB.GetTeam(ctx, store.TeamOrDefault(team))
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil || t.Limits.MaxVolumeMB <= 0 {
		return err
	}
	used, err := m.cfg.DB.TeamVolumeMB(ctx, t.ID)
	if err != nil {
		return err
	}
	return volumeQuota(t, used, sizeMB)
}

// volumeQuota refuses sizeMB more for team t, whose volumes have used.
func volumeQuota(t *store.Team, used, sizeMB int64) error {
	if t.Limits.MaxVolumeMB > 0 && used+sizeMB > t.Limits.MaxVolumeMB {
		return errdefs.New(errdefs.ErrResourceExhausted, "team %q's volumes would have %d MiB, above its limit of %d MiB (max-volume-mb)", t.Name, used+sizeMB, t.Limits.MaxVolumeMB)
	}
	return nil
}
