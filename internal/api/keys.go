package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
)

// keyPattern is the form of an sbx API key: the e2b SDKs (JS and Python)
// reject keys that are not "e2b_" followed by lowercase hex.
var keyPattern = regexp.MustCompile(`^e2b_[0-9a-f]{40}$`)

// Keys authenticates API keys. Only SHA-256 hashes of keys are stored: a key
// is 160 random bits, so a fast hash is enough and a leaked database does not
// reveal usable keys.
type Keys struct {
	db *store.DB
	// revoked ends the open requests of keys that are removed, here or
	// (seen at Refresh) by another server sharing the store.
	revoked *Revocations

	mu     sync.RWMutex
	byHash map[string]*store.APIKey
}

// NewKeys loads the stored keys.
func NewKeys(ctx context.Context, db *store.DB) (*Keys, error) {
	k := &Keys{db: db, revoked: NewRevocations()}
	if err := k.reload(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

// Refresh reloads the keys from the store, so that keys created or removed
// by another server sharing the database take effect here.
func (k *Keys) Refresh(ctx context.Context) error { return k.reload(ctx) }

func (k *Keys) reload(ctx context.Context) error {
	keys, err := k.db.ListAPIKeys(ctx)
	if err != nil {
		return err
	}
	m := make(map[string]*store.APIKey, len(keys))
	for _, key := range keys {
		m[key.Hash] = key
	}
	k.mu.Lock()
	old := k.byHash
	k.byHash = m
	k.mu.Unlock()
	// Keys gone from the store are refused from now on (Verify); the
	// requests they still have open end too.
	for h, key := range old {
		if _, ok := m[h]; !ok {
			k.revoked.Revoke(key.ID)
		}
	}
	return nil
}

// Revocations is the registry of the keys' open long-lived requests:
// removing a key (Delete, or another server's, seen by Refresh) cancels
// those tracked under its id.
func (k *Keys) Revocations() *Revocations { return k.revoked }

func hashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// Verify returns the stored key matching key. The lookup is by hash, so its
// timing reveals nothing about stored keys.
func (k *Keys) Verify(key string) (*store.APIKey, bool) {
	if !keyPattern.MatchString(key) {
		return nil, false
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	rec, ok := k.byHash[hashKey(key)]
	return rec, ok
}

// ByID returns the stored key of id.
func (k *Keys) ByID(id string) (*store.APIKey, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, rec := range k.byHash {
		if rec.ID == id {
			return rec, true
		}
	}
	return nil, false
}

// Empty reports whether no key exists yet (first start).
func (k *Keys) Empty() bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.byHash) == 0
}

// NewKey returns a fresh random key.
func NewKey() string {
	b := make([]byte, 20)
	rand.Read(b)
	return "e2b_" + hex.EncodeToString(b)
}

// Create stores key (a new random one when key is empty) of the default
// team and returns the record and the key itself, which is never
// retrievable again.
func (k *Keys) Create(ctx context.Context, name, key string, admin bool) (*store.APIKey, string, error) {
	return k.CreateInTeam(ctx, store.DefaultTeamID, name, key, admin)
}

// CreateInTeam is Create for a key of team (a store id); admin makes it
// an admin of that team.
func (k *Keys) CreateInTeam(ctx context.Context, team, name, key string, admin bool) (*store.APIKey, string, error) {
	if key == "" {
		key = NewKey()
	}
	if !keyPattern.MatchString(key) {
		return nil, "", errdefs.New(errdefs.ErrInvalidArgument, "an API key must be e2b_ followed by 40 lowercase hex digits")
	}
	if len(name) > 128 {
		return nil, "", errdefs.New(errdefs.ErrInvalidArgument, "key name: at most 128 bytes")
	}
	idb := make([]byte, 8)
	rand.Read(idb)
	rec := &store.APIKey{
		ID:        "key_" + hex.EncodeToString(idb),
		Name:      name,
		Hash:      hashKey(key),
		Prefix:    key[:10],
		Suffix:    key[len(key)-4:],
		Admin:     admin,
		CreatedAt: time.Now().UTC(),
		Team:      team,
	}
	if err := k.db.PutAPIKey(ctx, rec); err != nil {
		return nil, "", fmt.Errorf("create key: %w", err)
	}
	return rec, key, k.reload(ctx)
}

// Rename names key id name.
func (k *Keys) Rename(ctx context.Context, id, name string) error {
	if len(name) > 128 {
		return errdefs.New(errdefs.ErrInvalidArgument, "key name: at most 128 bytes")
	}
	if err := k.db.RenameAPIKey(ctx, id, name); err != nil {
		return err
	}
	return k.reload(ctx)
}

// List returns every key record.
func (k *Keys) List(ctx context.Context) ([]*store.APIKey, error) { return k.db.ListAPIKeys(ctx) }

// Delete removes key id. The last admin key of the default team cannot be
// removed: the server would become unmanageable.
func (k *Keys) Delete(ctx context.Context, id string) error {
	keys, err := k.db.ListAPIKeys(ctx)
	if err != nil {
		return err
	}
	admins, found := 0, (*store.APIKey)(nil)
	for _, key := range keys {
		if key.Admin && store.TeamOrDefault(key.Team) == store.DefaultTeamID {
			admins++
		}
		if key.ID == id {
			found = key
		}
	}
	if found == nil {
		return errdefs.New(errdefs.ErrNotFound, "api key %q not found", id)
	}
	if found.Admin && store.TeamOrDefault(found.Team) == store.DefaultTeamID && admins == 1 {
		return errdefs.New(errdefs.ErrFailedPrecondition, "cannot remove the last admin key")
	}
	if err := k.db.DeleteAPIKey(ctx, id); err != nil {
		return err
	}
	return k.reload(ctx)
}
