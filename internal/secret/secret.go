// Package secret seals team secrets with the server's key and names the
// placeholders that refer to them.
//
// # Overview
//
// A secret's value is stored only sealed: AES-256-GCM under a key kept in
// the data directory (secrets.key, mode 0600), with the secret's id as
// associated data so a sealed value cannot be moved to another row. The
// value is never returned by the API; it is opened only by the egress
// proxy, on the host, when it fills a placeholder
// ("${e2b.secrets.NAME}") in a request a sandbox sends.
//
// # Rotation
//
// [Open] loads secrets.key and, when present, secrets.key.old. Sealed
// values name the key that sealed them, so a server holding both opens
// either; [Keyring.Stale] tells which values the current key did not
// seal, and the server seals them again at start. To rotate: move
// secrets.key to secrets.key.old, restart (a new secrets.key is made and
// every value sealed with it), then delete secrets.key.old.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// KeyFile and OldKeyFile are the key files' names in the data directory.
const (
	KeyFile    = "secrets.key"
	OldKeyFile = "secrets.key.old"
)

// Keyring holds the server's secret keys. It is safe for concurrent use.
type Keyring struct {
	cur  key
	keys map[string]key
}

type key struct {
	id   string
	aead cipher.AEAD
}

// Open loads the keys of data directory dir, making secrets.key (32
// random bytes, 0600) when it does not exist.
func Open(dir string) (*Keyring, error) {
	path := filepath.Join(dir, KeyFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		raw = make([]byte, 32)
		rand.Read(raw)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("secrets key: %w", err)
		}
		_, err = f.Write(raw)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("secrets key: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	cur, err := newKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	k := &Keyring{cur: cur, keys: map[string]key{cur.id: cur}}
	old, err := os.ReadFile(filepath.Join(dir, OldKeyFile))
	if err == nil {
		ok, err := newKey(old)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", OldKeyFile, err)
		}
		k.keys[ok.id] = ok
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	return k, nil
}

func newKey(raw []byte) (key, error) {
	if len(raw) != 32 {
		return key{}, fmt.Errorf("a secrets key is 32 bytes, not %d", len(raw))
	}
	b, err := aes.NewCipher(raw)
	if err != nil {
		return key{}, err
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return key{}, err
	}
	sum := sha256.Sum256(raw)
	return key{id: hex.EncodeToString(sum[:4]), aead: g}, nil
}

// Seal encrypts value for the secret id: "v1.KEYID.BASE64".
func (k *Keyring) Seal(id, value string) string {
	nonce := make([]byte, k.cur.aead.NonceSize())
	rand.Read(nonce)
	ct := k.cur.aead.Seal(nonce, nonce, []byte(value), []byte(id))
	return "v1." + k.cur.id + "." + base64.RawStdEncoding.EncodeToString(ct)
}

// Unseal decrypts what Seal returned for id.
func (k *Keyring) Unseal(id, sealed string) (string, error) {
	parts := strings.SplitN(sealed, ".", 3)
	if len(parts) != 3 || parts[0] != "v1" {
		return "", fmt.Errorf("secret %s: not a sealed value", id)
	}
	kk, ok := k.keys[parts[1]]
	if !ok {
		return "", fmt.Errorf("secret %s: sealed with key %s, which this server does not hold (see secret's package doc on rotation)", id, parts[1])
	}
	ct, err := base64.RawStdEncoding.DecodeString(parts[2])
	if err != nil || len(ct) < kk.aead.NonceSize() {
		return "", fmt.Errorf("secret %s: corrupt sealed value", id)
	}
	pt, err := kk.aead.Open(nil, ct[:kk.aead.NonceSize()], ct[kk.aead.NonceSize():], []byte(id))
	if err != nil {
		return "", fmt.Errorf("secret %s: %w", id, err)
	}
	return string(pt), nil
}

// Stale reports whether sealed was sealed by a key other than the current.
func (k *Keyring) Stale(sealed string) bool {
	parts := strings.SplitN(sealed, ".", 3)
	return len(parts) != 3 || parts[1] != k.cur.id
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,128}$`)

// CheckName validates a secret's name and returns its canonical
// (lower-case) form. Errors are errdefs.ErrInvalidArgument.
func CheckName(name string) (string, error) {
	if !nameRE.MatchString(name) {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "name: a secret's name is 1-128 letters, digits, '_' and '-'")
	}
	n := strings.ToLower(name)
	if strings.HasPrefix(n, "sec_") {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "name: the sec_ prefix is reserved for secret identifiers")
	}
	return n, nil
}

// MaxValue bounds a secret's value.
const MaxValue = 64 << 10

// CheckValue validates a secret's value. Errors are
// errdefs.ErrInvalidArgument.
func CheckValue(v string) error {
	if v == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "value: a secret's value cannot be empty")
	}
	if len(v) > MaxValue {
		return errdefs.New(errdefs.ErrInvalidArgument, "value: at most %d bytes", MaxValue)
	}
	return nil
}

// CheckMetadata validates a secret's metadata as E2B bounds it. Errors
// are errdefs.ErrInvalidArgument.
func CheckMetadata(md map[string]string) error {
	if len(md) > 32 {
		return errdefs.New(errdefs.ErrInvalidArgument, "metadata: at most 32 entries")
	}
	total := 0
	for k, v := range md {
		if k == "" || len(k) > 128 || len(v) > 1024 {
			return errdefs.New(errdefs.ErrInvalidArgument, "metadata: keys are 1-128 bytes, values at most 1024")
		}
		total += len(k) + len(v)
	}
	if total > 8192 {
		return errdefs.New(errdefs.ErrInvalidArgument, "metadata: at most 8192 bytes in all")
	}
	return nil
}
