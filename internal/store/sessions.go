package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// sessionsTable holds the dashboard's sign-in sessions. Only a hash of the
// session id (the cookie's value) is kept: a leaked database does not give
// a usable cookie.
const sessionsTable = `CREATE TABLE dashboard_sessions (
		hash TEXT PRIMARY KEY,
		key_id TEXT NOT NULL,
		csrf_token TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL
	)`

// sessionsKeyIndex finds the sessions of a key as it is revoked.
const sessionsKeyIndex = `CREATE INDEX dashboard_sessions_key ON dashboard_sessions (key_id)`

// Session is a dashboard sign-in: a browser holding the session id whose
// hash is Hash acts as API key KeyID until ExpiresAt.
type Session struct {
	Hash      string
	KeyID     string
	CSRFToken string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// PutSession stores a new session.
func (s *DB) PutSession(ctx context.Context, ss *Session) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO dashboard_sessions (hash, key_id, csrf_token, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
		ss.Hash, ss.KeyID, ss.CSRFToken, ss.CreatedAt.UnixNano(), ss.ExpiresAt.UnixNano())
	if err != nil {
		return fmt.Errorf("store session: %w", err)
	}
	return nil
}

// GetSession returns the session of hash, or an error wrapping
// errdefs.ErrNotFound. An expired session is returned as it is: the
// caller compares ExpiresAt.
func (s *DB) GetSession(ctx context.Context, hash string) (*Session, error) {
	var ss Session
	var created, expires int64
	err := s.db.QueryRowContext(ctx, `SELECT hash, key_id, csrf_token, created_at, expires_at FROM dashboard_sessions WHERE hash = ?`, hash).
		Scan(&ss.Hash, &ss.KeyID, &ss.CSRFToken, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errdefs.New(errdefs.ErrNotFound, "session not found")
	}
	if err != nil {
		return nil, fmt.Errorf("get session: %w", err)
	}
	ss.CreatedAt, ss.ExpiresAt = time.Unix(0, created).UTC(), time.Unix(0, expires).UTC()
	return &ss, nil
}

// DeleteSession removes the session of hash; removing one that is gone
// is not an error.
func (s *DB) DeleteSession(ctx context.Context, hash string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM dashboard_sessions WHERE hash = ?`, hash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteKeySessions removes every session of API key keyID and returns
// their hashes.
func (s *DB) DeleteKeySessions(ctx context.Context, keyID string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT hash FROM dashboard_sessions WHERE key_id = ?`, keyID)
	if err != nil {
		return nil, fmt.Errorf("list sessions of key %s: %w", keyID, err)
	}
	var hashes []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list sessions of key %s: %w", keyID, err)
		}
		hashes = append(hashes, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list sessions of key %s: %w", keyID, err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM dashboard_sessions WHERE key_id = ?`, keyID); err != nil {
		return nil, fmt.Errorf("delete sessions of key %s: %w", keyID, err)
	}
	return hashes, nil
}

// PruneSessions removes the sessions that expired before t and returns
// how many.
func (s *DB) PruneSessions(ctx context.Context, t time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM dashboard_sessions WHERE expires_at < ?`, t.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("prune sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
