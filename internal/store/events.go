package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// DefaultTeamID is the id of the one team every key belongs to until teams
// exist; events, webhooks and audit records carry it so that teams need no
// migration.
const DefaultTeamID = "00000000-0000-0000-0000-000000000000"

const (
	eventsTable = `CREATE TABLE events (
		id TEXT PRIMARY KEY,
		sandbox_id TEXT NOT NULL,
		type TEXT NOT NULL,
		at BIGINT NOT NULL,
		team_id TEXT NOT NULL,
		template TEXT NOT NULL,
		build_id TEXT NOT NULL,
		execution_id TEXT NOT NULL,
		data TEXT NOT NULL
	)`
	eventsTimeIndex    = `CREATE INDEX events_at ON events (at)`
	eventsSandboxIndex = `CREATE INDEX events_sandbox ON events (sandbox_id, at)`
	webhooksTable      = `CREATE TABLE webhooks (
		id TEXT PRIMARY KEY,
		team_id TEXT NOT NULL,
		name TEXT NOT NULL,
		url TEXT NOT NULL,
		events TEXT NOT NULL,
		enabled BIGINT NOT NULL,
		secret TEXT NOT NULL,
		created_at BIGINT NOT NULL
	)`
	// One row per event and webhook it goes to: the outbox. A row is
	// pending until delivered_at or failed_at is set.
	outboxTable = `CREATE TABLE outbox (
		event_id TEXT NOT NULL,
		webhook_id TEXT NOT NULL,
		attempts BIGINT NOT NULL,
		next_at BIGINT NOT NULL,
		delivered_at BIGINT NOT NULL,
		failed_at BIGINT NOT NULL,
		last_error TEXT NOT NULL,
		PRIMARY KEY (event_id, webhook_id)
	)`
	outboxDueIndex = `CREATE INDEX outbox_due ON outbox (delivered_at, failed_at, next_at)`
	auditTable     = `CREATE TABLE audit (
		id TEXT PRIMARY KEY,
		at BIGINT NOT NULL,
		team_id TEXT NOT NULL,
		key_id TEXT NOT NULL,
		key_name TEXT NOT NULL,
		admin BIGINT NOT NULL,
		method TEXT NOT NULL,
		route TEXT NOT NULL,
		object_id TEXT NOT NULL,
		status BIGINT NOT NULL,
		remote TEXT NOT NULL
	)`
	auditTimeIndex = `CREATE INDEX audit_at ON audit (at)`
)

// queryer is what queries need of the database or a transaction.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Event is a stored lifecycle event of a sandbox.
type Event struct {
	ID          string // a UUID, made by the caller
	Type        string // "sandbox.lifecycle.created", ...
	SandboxID   string
	TeamID      string
	Template    string
	BuildID     string
	ExecutionID string
	At          time.Time
	// Data is the event's details, a JSON object.
	Data json.RawMessage
}

// UpdateSandboxEvent is UpdateSandbox and, in the same transaction, stores
// ev and queues it in the outbox for every enabled webhook that subscribes
// to its type: the state change and its event are stored together or not
// at all. A nil ev is UpdateSandbox.
func (s *DB) UpdateSandboxEvent(ctx context.Context, sb *Sandbox, ev *Event) error {
	if ev == nil {
		return s.UpdateSandbox(ctx, sb)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("update sandbox %s: %w", sb.ID, err)
	}
	defer tx.Rollback()
	next := *sb
	if err := s.updateSandbox(ctx, tx, &next); err != nil {
		return err
	}
	if err := putEvent(ctx, tx, ev); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("update sandbox %s: %w", sb.ID, err)
	}
	sb.Version = next.Version
	return nil
}

// PutEvent stores ev, not tied to a state change (a snapshot, say), and
// queues it for its webhooks, in one transaction.
func (s *DB) PutEvent(ctx context.Context, ev *Event) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store event: %w", err)
	}
	defer tx.Rollback()
	if err := putEvent(ctx, tx, ev); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store event: %w", err)
	}
	return nil
}

func putEvent(ctx context.Context, ex queryer, ev *Event) error {
	data := ev.Data
	if len(data) == 0 {
		data = json.RawMessage(`{}`)
	}
	_, err := ex.ExecContext(ctx, `INSERT INTO events (id, sandbox_id, type, at, team_id, template, build_id, execution_id, data)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		ev.ID, ev.SandboxID, ev.Type, ev.At.UnixNano(), ev.TeamID, ev.Template, ev.BuildID, ev.ExecutionID, string(data))
	if err != nil {
		return fmt.Errorf("store event %s: %w", ev.ID, err)
	}
	hooks, err := listWebhooks(ctx, ex, ` WHERE enabled = 1 AND team_id = ?`, ev.TeamID)
	if err != nil {
		return err
	}
	for _, w := range hooks {
		if !slices.Contains(w.Events, ev.Type) {
			continue
		}
		_, err := ex.ExecContext(ctx, `INSERT INTO outbox (event_id, webhook_id, attempts, next_at, delivered_at, failed_at, last_error)
			VALUES (?, ?, 0, ?, 0, 0, '') ON CONFLICT (event_id, webhook_id) DO NOTHING`, ev.ID, w.ID, ev.At.UnixNano())
		if err != nil {
			return fmt.Errorf("queue event %s for webhook %s: %w", ev.ID, w.ID, err)
		}
	}
	return nil
}

// EventFilter selects events for ListEvents.
type EventFilter struct {
	SandboxID string   // empty: every sandbox
	TeamID    string   // empty: every team
	Types     []string // empty: every type
	// Limit bounds the events returned (0: 100); Offset skips that many.
	Limit, Offset int
	// Asc lists oldest first; otherwise newest first.
	Asc bool
}

const eventColumns = `id, sandbox_id, type, at, team_id, template, build_id, execution_id, data`

// ListEvents returns the events f selects, ordered by time.
func (s *DB) ListEvents(ctx context.Context, f EventFilter) ([]*Event, error) {
	var where []string
	var args []any
	if f.SandboxID != "" {
		where = append(where, `sandbox_id = ?`)
		args = append(args, f.SandboxID)
	}
	if f.TeamID != "" {
		where = append(where, `team_id = ?`)
		args = append(args, f.TeamID)
	}
	if len(f.Types) > 0 {
		where = append(where, `type IN (?`+strings.Repeat(`, ?`, len(f.Types)-1)+`)`)
		for _, t := range f.Types {
			args = append(args, t)
		}
	}
	q := `SELECT ` + eventColumns + ` FROM events`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	order := `DESC`
	if f.Asc {
		order = `ASC`
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q += ` ORDER BY at ` + order + `, id ` + order + ` LIMIT ? OFFSET ?`
	args = append(args, limit, f.Offset)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []*Event
	for rows.Next() {
		ev, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		out = append(out, ev)
	}
	return out, rows.Err()
}

func scanEvent(row interface{ Scan(...any) error }) (*Event, error) {
	var ev Event
	var at int64
	var data string
	if err := row.Scan(&ev.ID, &ev.SandboxID, &ev.Type, &at, &ev.TeamID, &ev.Template, &ev.BuildID, &ev.ExecutionID, &data); err != nil {
		return nil, err
	}
	ev.At = time.Unix(0, at).UTC()
	ev.Data = json.RawMessage(data)
	return &ev, nil
}

// Webhook is a registered webhook. Secret signs its deliveries and is never
// shown back.
type Webhook struct {
	ID        string
	TeamID    string
	Name      string
	URL       string
	Events    []string
	Enabled   bool
	Secret    string
	CreatedAt time.Time
}

// PutWebhook stores w, new or changed.
func (s *DB) PutWebhook(ctx context.Context, w *Webhook) error {
	evs, _ := json.Marshal(w.Events)
	_, err := s.db.ExecContext(ctx, `INSERT INTO webhooks (id, team_id, name, url, events, enabled, secret, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, url = excluded.url, events = excluded.events,
			enabled = excluded.enabled, secret = excluded.secret`,
		w.ID, w.TeamID, w.Name, w.URL, string(evs), boolInt(w.Enabled), w.Secret, w.CreatedAt.UnixNano())
	if err != nil {
		return fmt.Errorf("store webhook %s: %w", w.ID, err)
	}
	return nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// GetWebhook returns webhook id, or an error wrapping errdefs.ErrNotFound.
func (s *DB) GetWebhook(ctx context.Context, id string) (*Webhook, error) {
	ws, err := listWebhooks(ctx, s.db, ` WHERE id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return nil, errdefs.New(errdefs.ErrNotFound, "webhook %q not found", id)
	}
	return ws[0], nil
}

// ListWebhooks returns team's webhooks, oldest first.
func (s *DB) ListWebhooks(ctx context.Context, team string) ([]*Webhook, error) {
	return listWebhooks(ctx, s.db, ` WHERE team_id = ?`, team)
}

func listWebhooks(ctx context.Context, ex queryer, where string, args ...any) ([]*Webhook, error) {
	rows, err := ex.QueryContext(ctx, `SELECT id, team_id, name, url, events, enabled, secret, created_at FROM webhooks`+where+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	defer rows.Close()
	var out []*Webhook
	for rows.Next() {
		var w Webhook
		var evs string
		var enabled, created int64
		if err := rows.Scan(&w.ID, &w.TeamID, &w.Name, &w.URL, &evs, &enabled, &w.Secret, &created); err != nil {
			return nil, fmt.Errorf("list webhooks: %w", err)
		}
		if err := json.Unmarshal([]byte(evs), &w.Events); err != nil {
			return nil, fmt.Errorf("webhook %s events: %w", w.ID, err)
		}
		w.Enabled, w.CreatedAt = enabled != 0, time.Unix(0, created).UTC()
		out = append(out, &w)
	}
	return out, rows.Err()
}

// DeleteWebhook removes webhook id and its pending deliveries, or returns
// an error wrapping errdefs.ErrNotFound.
func (s *DB) DeleteWebhook(ctx context.Context, id string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete webhook %s: %w", id, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM webhooks WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete webhook %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errdefs.New(errdefs.ErrNotFound, "webhook %q not found", id)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE webhook_id = ?`, id); err != nil {
		return fmt.Errorf("delete webhook %s: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete webhook %s: %w", id, err)
	}
	return nil
}

// Delivery is an outbox row with what sending it needs: the event and the
// webhook's address and secret.
type Delivery struct {
	Event       *Event
	WebhookID   string
	URL         string
	Secret      string
	Attempts    int
	NextAt      time.Time
	DeliveredAt time.Time // zero: not delivered
	FailedAt    time.Time // zero: not given up on
	LastError   string
}

const deliveryQuery = `SELECT e.id, e.sandbox_id, e.type, e.at, e.team_id, e.template, e.build_id, e.execution_id, e.data,
	o.webhook_id, w.url, w.secret, o.attempts, o.next_at, o.delivered_at, o.failed_at, o.last_error
	FROM outbox o JOIN events e ON e.id = o.event_id JOIN webhooks w ON w.id = o.webhook_id`

func scanDeliveries(rows *sql.Rows) ([]*Delivery, error) {
	defer rows.Close()
	var out []*Delivery
	for rows.Next() {
		var d Delivery
		var ev Event
		var at, next, delivered, failed int64
		var data string
		if err := rows.Scan(&ev.ID, &ev.SandboxID, &ev.Type, &at, &ev.TeamID, &ev.Template, &ev.BuildID, &ev.ExecutionID, &data,
			&d.WebhookID, &d.URL, &d.Secret, &d.Attempts, &next, &delivered, &failed, &d.LastError); err != nil {
			return nil, fmt.Errorf("list deliveries: %w", err)
		}
		ev.At, ev.Data = time.Unix(0, at).UTC(), json.RawMessage(data)
		d.Event = &ev
		d.NextAt, d.DeliveredAt, d.FailedAt = time.Unix(0, next).UTC(), timeOrZero(delivered), timeOrZero(failed)
		out = append(out, &d)
	}
	return out, rows.Err()
}

// DueDeliveries returns at most limit pending deliveries to enabled
// webhooks due at now, earliest first.
func (s *DB) DueDeliveries(ctx context.Context, now time.Time, limit int) ([]*Delivery, error) {
	rows, err := s.db.QueryContext(ctx, deliveryQuery+` WHERE o.delivered_at = 0 AND o.failed_at = 0 AND w.enabled = 1 AND o.next_at <= ?
		ORDER BY o.next_at, e.at LIMIT ?`, now.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("list due deliveries: %w", err)
	}
	return scanDeliveries(rows)
}

// WebhookDeliveries returns webhook id's deliveries, newest event first, at
// most limit.
func (s *DB) WebhookDeliveries(ctx context.Context, id string, limit int) ([]*Delivery, error) {
	rows, err := s.db.QueryContext(ctx, deliveryQuery+` WHERE o.webhook_id = ? ORDER BY e.at DESC, e.id DESC LIMIT ?`, id, limit)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	return scanDeliveries(rows)
}

// NextDelivery returns when the earliest pending delivery to an enabled
// webhook is due, and false when none is pending. (A disabled webhook's
// deliveries wait until it is enabled again.)
func (s *DB) NextDelivery(ctx context.Context) (time.Time, bool, error) {
	var next sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT min(o.next_at) FROM outbox o JOIN webhooks w ON w.id = o.webhook_id
		WHERE o.delivered_at = 0 AND o.failed_at = 0 AND w.enabled = 1`).Scan(&next)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next delivery: %w", err)
	}
	if !next.Valid {
		return time.Time{}, false, nil
	}
	return time.Unix(0, next.Int64).UTC(), true, nil
}

// ClaimDelivery takes pending delivery d for one attempt: it moves its next
// attempt to until, provided nobody moved it since d was read (a
// compare-and-set, so that two servers sharing the database do not both
// send it). False: another writer has it.
func (s *DB) ClaimDelivery(ctx context.Context, d *Delivery, until time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE outbox SET next_at = ?
		WHERE event_id = ? AND webhook_id = ? AND next_at = ? AND attempts = ? AND delivered_at = 0 AND failed_at = 0`,
		until.UnixNano(), d.Event.ID, d.WebhookID, d.NextAt.UnixNano(), d.Attempts)
	if err != nil {
		return false, fmt.Errorf("claim delivery: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("claim delivery: %w", err)
	}
	if n == 1 {
		d.NextAt = until
	}
	return n == 1, nil
}

// RecordAttempt stores the outcome of attempt number attempts of delivery
// (eventID, webhookID): delivered at delivered (not zero), or failed with
// errText and next tried at next, or given up on at failed (not zero).
func (s *DB) RecordAttempt(ctx context.Context, eventID, webhookID string, attempts int, next, delivered, failed time.Time, errText string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE outbox SET attempts = ?, next_at = ?, delivered_at = ?, failed_at = ?, last_error = ?
		WHERE event_id = ? AND webhook_id = ?`,
		attempts, next.UnixNano(), unixOrZero(delivered), unixOrZero(failed), errText, eventID, webhookID)
	if err != nil {
		return fmt.Errorf("record delivery attempt: %w", err)
	}
	return nil
}

// PruneEvents deletes the events older than before and their deliveries,
// and returns how many events went.
func (s *DB) PruneEvents(ctx context.Context, before time.Time) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE event_id IN (SELECT id FROM events WHERE at < ?)`, before.UnixNano()); err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM events WHERE at < ?`, before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, tx.Commit()
}

// AuditRecord is one entry of the audit log: who did what to which object,
// when, from where, and how it ended.
type AuditRecord struct {
	ID       string
	At       time.Time
	TeamID   string
	KeyID    string // empty: no valid key (an authentication failure)
	KeyName  string
	Admin    bool
	Method   string
	Route    string // the route's pattern, e.g. "DELETE /sandboxes/{id}"
	ObjectID string
	Status   int
	Remote   string // the client's address
}

// PutAudit stores r.
func (s *DB) PutAudit(ctx context.Context, r *AuditRecord) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO audit (id, at, team_id, key_id, key_name, admin, method, route, object_id, status, remote)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.At.UnixNano(), r.TeamID, r.KeyID, r.KeyName, boolInt(r.Admin), r.Method, r.Route, r.ObjectID, r.Status, r.Remote)
	if err != nil {
		return fmt.Errorf("store audit record: %w", err)
	}
	return nil
}

// AuditFilter selects audit records for ListAudit.
type AuditFilter struct {
	Since    time.Time // zero: from the first
	KeyID    string
	ObjectID string
	// Limit bounds the records returned (0: 100); Offset skips that many.
	Limit, Offset int
}

// ListAudit returns the records f selects, newest first.
func (s *DB) ListAudit(ctx context.Context, f AuditFilter) ([]*AuditRecord, error) {
	q := `SELECT id, at, team_id, key_id, key_name, admin, method, route, object_id, status, remote FROM audit WHERE at >= ?`
	args := []any{unixOrZero(f.Since)}
	if f.KeyID != "" {
		q += ` AND key_id = ?`
		args = append(args, f.KeyID)
	}
	if f.ObjectID != "" {
		q += ` AND object_id = ?`
		args = append(args, f.ObjectID)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q += ` ORDER BY at DESC, id DESC LIMIT ? OFFSET ?`
	args = append(args, limit, f.Offset)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	var out []*AuditRecord
	for rows.Next() {
		var r AuditRecord
		var at, admin int64
		if err := rows.Scan(&r.ID, &at, &r.TeamID, &r.KeyID, &r.KeyName, &admin, &r.Method, &r.Route, &r.ObjectID, &r.Status, &r.Remote); err != nil {
			return nil, fmt.Errorf("list audit: %w", err)
		}
		r.At, r.Admin = time.Unix(0, at).UTC(), admin != 0
		out = append(out, &r)
	}
	return out, rows.Err()
}

// PruneAudit deletes the audit records older than before and returns how
// many went.
func (s *DB) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM audit WHERE at < ?`, before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("prune audit: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
