// Package audit keeps the admin database's audit log: an append-only, hash-chained table
// (admin.audit_log) written inside the transaction of the change each row records.
package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// auditLockKey serializes appends to admin.audit_log (pg_advisory_xact_lock) so the hash chain
// is linear: each append reads the last row and writes the next while holding it until commit.
const auditLockKey int64 = 0x6e656f617564 // "neoaud"

// genesisHash is prev_hash of the first row.
var genesisHash = make([]byte, sha256.Size)

// Entry is one audit log row.
type Entry struct {
	ID         int64           `json:"id"`
	OccurredAt time.Time       `json:"occurred_at"`
	Actor      string          `json:"actor"`
	Action     string          `json:"action"`
	TargetType string          `json:"target_type"`
	TargetID   *string         `json:"target_id,omitempty"`
	TenantID   *string         `json:"tenant_id,omitempty"`
	Before     json.RawMessage `json:"before,omitempty"`
	After      json.RawMessage `json:"after,omitempty"`
	RequestID  *string         `json:"request_id,omitempty"`
	OutboxID   *string         `json:"outbox_id,omitempty"` // the tenant audit_outbox row it was shipped from
	// ShippedAt and SourceSchema say when and from which tenant schema an outbox row was
	// shipped; OccurredAtImplausible marks a claimed time before the tenant existed or after
	// the shipping.
	ShippedAt             *time.Time `json:"shipped_at,omitempty"`
	SourceSchema          *string    `json:"source_schema,omitempty"`
	OccurredAtImplausible bool       `json:"occurred_at_implausible,omitempty"`
	PrevHash              []byte     `json:"prev_hash"`
	Hash                  []byte     `json:"hash"`
}

// Record is what a writer asks to append.
type Record struct {
	Actor, Action, TargetType, TargetID, TenantID, RequestID string
	Before, After                                            any
	// OutboxID and OccurredAt are set when shipping a tenant's audit_outbox row: the row is
	// recorded at most once per outbox id, with the time of the change it records. Otherwise
	// occurred_at is the time of the append.
	OutboxID   string
	OccurredAt time.Time
	// SourceSchema, set when shipping, records the schema and the shipping time (now).
	SourceSchema          string
	OccurredAtImplausible bool
}

// canonical is the byte string a row's hash covers: a JSON array of the row's fields in a fixed
// order. before/after are PostgreSQL's jsonb text (already normalised: key order, spacing), so
// the writer and the verifier hash the same bytes whatever JSON the writer sent. outbox_id is
// appended only when set, so rows without one (every row written before it existed) keep the
// canonical form, and the hash, they had.
func canonical(e *Entry) ([]byte, error) {
	raw := func(m json.RawMessage) any {
		if m == nil {
			return nil
		}
		return m
	}
	fields := []any{
		e.ID, e.OccurredAt.UTC().Format("2006-01-02T15:04:05.000000Z"), e.Actor, e.Action, e.TargetType,
		e.TargetID, e.TenantID, raw(e.Before), raw(e.After), e.RequestID,
	}
	if e.OutboxID != nil {
		fields = append(fields, *e.OutboxID)
	}
	if e.ShippedAt != nil {
		fields = append(fields, e.ShippedAt.UTC().Format("2006-01-02T15:04:05.000000Z"), e.SourceSchema, e.OccurredAtImplausible)
	}
	return json.Marshal(fields)
}

func chainHash(prev []byte, e *Entry) ([]byte, error) {
	c, err := canonical(e)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(prev)
	h.Write(c)
	return h.Sum(nil), nil
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func jsonOrNil(v any) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	return json.Marshal(v)
}

// Payload returns rec's before and after as JSON (nil when absent).
func (rec Record) Payload() (before, after []byte, err error) {
	if before, err = jsonOrNil(rec.Before); err != nil {
		return nil, nil, err
	}
	after, err = jsonOrNil(rec.After)
	return before, after, err
}

// ErrShipped says an outbox row was already recorded: Append appended nothing.
var ErrShipped = errors.New("audit outbox row already recorded")

// Append appends rec to the chain inside tx, so the row commits or rolls back with the
// change it records. Ids are assigned here (max + 1 under the lock) rather than by the
// identity sequence, so a rolled-back append leaves no gap and a gap always means a removal.
// A record with an OutboxID already in the log is not appended again (ON CONFLICT (outbox_id)
// DO NOTHING): Append returns ErrShipped and the chain is unchanged.
func Append(ctx context.Context, tx pgx.Tx, rec Record) (Entry, error) {
	before, after, err := rec.Payload()
	if err != nil {
		return Entry{}, err
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, auditLockKey); err != nil {
		return Entry{}, fmt.Errorf("audit lock: %w", err)
	}
	e := Entry{Actor: rec.Actor, Action: rec.Action, TargetType: rec.TargetType,
		TargetID: nullable(rec.TargetID), TenantID: nullable(rec.TenantID), RequestID: nullable(rec.RequestID),
		OutboxID: nullable(rec.OutboxID), SourceSchema: nullable(rec.SourceSchema), OccurredAtImplausible: rec.OccurredAtImplausible}
	var occurredAt *time.Time
	if !rec.OccurredAt.IsZero() {
		occurredAt = &rec.OccurredAt
	}
	var lastID *int64
	var lastHash []byte
	var beforeText, afterText *string
	var now time.Time
	err = tx.QueryRow(ctx, `SELECT l.id, l.hash, coalesce($3::timestamptz, clock_timestamp()), $1::jsonb::text, $2::jsonb::text, clock_timestamp()
		FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT id, hash FROM admin.audit_log ORDER BY id DESC LIMIT 1) l ON true`,
		before, after, occurredAt).Scan(&lastID, &lastHash, &e.OccurredAt, &beforeText, &afterText, &now)
	if err != nil {
		return Entry{}, fmt.Errorf("audit tail: %w", err)
	}
	e.ID, e.PrevHash = 1, genesisHash
	if lastID != nil {
		e.ID, e.PrevHash = *lastID+1, lastHash
	}
	// PostgreSQL keeps microseconds; hash exactly what will be read back.
	e.OccurredAt = e.OccurredAt.Truncate(time.Microsecond)
	if e.SourceSchema != nil {
		shipped := now.Truncate(time.Microsecond)
		e.ShippedAt = &shipped
	}
	if beforeText != nil {
		e.Before = json.RawMessage(*beforeText)
	}
	if afterText != nil {
		e.After = json.RawMessage(*afterText)
	}
	if e.Hash, err = chainHash(e.PrevHash, &e); err != nil {
		return Entry{}, err
	}
	// A NULL outbox_id never conflicts; a shipped outbox row already in the log is skipped
	// (appends are serialized by the lock, so the id computed above is simply not used).
	tag, err := tx.Exec(ctx, `INSERT INTO admin.audit_log
		(id, occurred_at, actor, action, target_type, target_id, tenant_id, before, after, request_id, prev_hash, hash, outbox_id,
		 shipped_at, source_schema, occurred_at_implausible)
		OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7::uuid, $8::jsonb, $9::jsonb, $10, $11, $12, $13::uuid, $14, $15, $16)
		ON CONFLICT (outbox_id) DO NOTHING`,
		e.ID, e.OccurredAt, e.Actor, e.Action, e.TargetType, e.TargetID, e.TenantID, beforeText, afterText, e.RequestID, e.PrevHash, e.Hash, e.OutboxID,
		e.ShippedAt, e.SourceSchema, e.OccurredAtImplausible)
	if err != nil {
		return Entry{}, fmt.Errorf("audit append: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return Entry{}, ErrShipped
	}
	if _, err := tx.Exec(ctx, `INSERT INTO admin.audit_head (id, last_id, last_hash) VALUES (true, $1, $2)
		ON CONFLICT (id) DO UPDATE SET last_id = EXCLUDED.last_id, last_hash = EXCLUDED.last_hash, updated_at = now()`,
		e.ID, e.Hash); err != nil {
		return Entry{}, fmt.Errorf("audit head: %w", err)
	}
	return e, nil
}

// AppendNow appends in a transaction of its own: for changes made by code that runs its
// own transactions (tenancy.Create, registry.Check), recorded right after with their outcome.
func AppendNow(ctx context.Context, pool *pgxpool.Pool, rec Record) error {
	return pgx.BeginFunc(context.WithoutCancel(ctx), pool, func(tx pgx.Tx) error {
		_, err := Append(ctx, tx, rec)
		return err
	})
}

// Verification is the outcome of walking the chain.
type Verification struct {
	OK   bool  `json:"ok"`
	Rows int64 `json:"rows_checked"`
	// FirstBadID is the first row found altered, or the first id found missing.
	FirstBadID *int64 `json:"first_bad_id,omitempty"`
	Problem    string `json:"problem,omitempty"`
}

// Head is the newest row of the chain: its id and hash.
type Head struct {
	ID   int64
	Hash []byte
}

// Verify walks admin.audit_log in id order and reports the first row altered (its hash
// does not match its content, or its prev_hash does not match the previous row's hash) or
// removed (a gap in the ids, or a chain ending before the head recorded in admin.audit_head,
// or before expect when given: a checkpoint kept outside the database).
func Verify(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, expect *Head) (Verification, error) {
	var head *Head
	rows, err := q.Query(ctx, `SELECT last_id, last_hash FROM admin.audit_head`)
	if err != nil {
		return Verification{}, err
	}
	heads, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Head, error) {
		var h Head
		err := row.Scan(&h.ID, &h.Hash)
		return h, err
	})
	if err != nil {
		return Verification{}, err
	}
	if len(heads) == 1 {
		head = &heads[0]
	}
	rows, err = q.Query(ctx, `SELECT `+Columns+` FROM admin.audit_log ORDER BY id`)
	if err != nil {
		return Verification{}, err
	}
	defer rows.Close()
	res := Verification{OK: true}
	prevID, prevHash := int64(0), genesisHash
	bad := func(id int64, msg string) {
		res.OK, res.FirstBadID, res.Problem = false, &id, msg
	}
	seen := map[int64][]byte{}
	for rows.Next() {
		e, err := Scan(rows)
		if err != nil {
			return Verification{}, err
		}
		res.Rows++
		switch {
		case e.ID != prevID+1:
			bad(prevID+1, fmt.Sprintf("row %d removed: ids jump from %d to %d", prevID+1, prevID, e.ID))
		case !bytes.Equal(e.PrevHash, prevHash):
			bad(prevID, fmt.Sprintf("row %d altered: row %d's prev_hash does not match its hash", prevID, e.ID))
		default:
			h, err := chainHash(e.PrevHash, &e)
			if err != nil {
				return Verification{}, err
			}
			if !bytes.Equal(h, e.Hash) {
				bad(e.ID, fmt.Sprintf("row %d altered: its content does not match its hash", e.ID))
			}
		}
		if !res.OK {
			return res, nil
		}
		for _, h := range []*Head{head, expect} {
			if h != nil && h.ID == e.ID {
				seen[e.ID] = e.Hash
			}
		}
		prevID, prevHash = e.ID, e.Hash
	}
	if err := rows.Err(); err != nil {
		return Verification{}, err
	}
	for _, c := range []struct {
		h    *Head
		what string
	}{{head, "the recorded head (admin.audit_head)"}, {expect, "the expected head (checkpoint)"}} {
		switch {
		case c.h == nil:
		case c.h.ID > prevID:
			bad(prevID+1, fmt.Sprintf("rows %d to %d removed: the chain ends at row %d, %s is row %d", prevID+1, c.h.ID, prevID, c.what, c.h.ID))
		case !bytes.Equal(seen[c.h.ID], c.h.Hash):
			bad(c.h.ID, fmt.Sprintf("row %d altered: its hash differs from %s", c.h.ID, c.what))
		}
		if !res.OK {
			return res, nil
		}
	}
	if head == nil && prevID > 0 {
		bad(prevID, "admin.audit_head is missing: the chain's end cannot be confirmed")
	}
	return res, nil
}

// Checkpoint is a head with a MAC under an operator's key: printed by `admin audit
// checkpoint`, kept outside the database, and given back to verify.
func Checkpoint(h Head, key []byte) string {
	body := fmt.Sprintf("%d:%s", h.ID, hex.EncodeToString(h.Hash))
	return body + ":" + hex.EncodeToString(checkpointMAC(body, key))
}

// ErrBadCheckpoint is returned for a checkpoint that does not parse or whose MAC does not
// match under the key.
var ErrBadCheckpoint = errors.New("not a checkpoint made with this key")

// ParseCheckpoint returns the head a checkpoint names after checking its MAC under key.
func ParseCheckpoint(s string, key []byte) (Head, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return Head{}, ErrBadCheckpoint
	}
	body, mac := s[:i], s[i+1:]
	got, err := hex.DecodeString(mac)
	if err != nil || !hmac.Equal(got, checkpointMAC(body, key)) {
		return Head{}, ErrBadCheckpoint
	}
	idText, hashText, ok := strings.Cut(body, ":")
	if !ok {
		return Head{}, ErrBadCheckpoint
	}
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil {
		return Head{}, ErrBadCheckpoint
	}
	hash, err := hex.DecodeString(hashText)
	if err != nil {
		return Head{}, ErrBadCheckpoint
	}
	return Head{ID: id, Hash: hash}, nil
}

func checkpointMAC(body string, key []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("neoauthz audit head\x00" + body))
	return m.Sum(nil)
}

// CurrentHead reads the recorded head; ok is false for an empty chain.
func CurrentHead(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (h Head, ok bool, err error) {
	err = q.QueryRow(ctx, `SELECT last_id, last_hash FROM admin.audit_head`).Scan(&h.ID, &h.Hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return Head{}, false, nil
	}
	return h, err == nil, err
}

// EnvKey names the environment variable holding the operator's checkpoint key.
const EnvKey = "NEOAUTHZ_AUDIT_KEY"

// Columns are the audit_log columns Scan reads, in its order.
const Columns = `id, occurred_at, actor, action, target_type, target_id, tenant_id::text,
	before::text, after::text, request_id, outbox_id::text, shipped_at, source_schema, occurred_at_implausible, prev_hash, hash`

// Scan reads a row selected with Columns, then any extra columns into extra.
func Scan(row pgx.Row, extra ...any) (Entry, error) {
	var e Entry
	var before, after *string
	dest := append([]any{&e.ID, &e.OccurredAt, &e.Actor, &e.Action, &e.TargetType, &e.TargetID, &e.TenantID,
		&before, &after, &e.RequestID, &e.OutboxID, &e.ShippedAt, &e.SourceSchema, &e.OccurredAtImplausible, &e.PrevHash, &e.Hash}, extra...)
	err := row.Scan(dest...)
	if before != nil {
		e.Before = json.RawMessage(*before)
	}
	if after != nil {
		e.After = json.RawMessage(*after)
	}
	return e, err
}

type actorKey struct{}

// Attribution is who a change is recorded as made by, carried in the context of work that
// appends audit rows on its own (provisioning, migration jobs, health checks).
type Attribution struct {
	Actor, RequestID string
}

// WithActor returns ctx carrying the actor (and request id, if any) of the work done under it.
func WithActor(ctx context.Context, actor, requestID string) context.Context {
	return context.WithValue(ctx, actorKey{}, Attribution{Actor: actor, RequestID: requestID})
}

// Unattributed is the actor recorded for work whose context names none.
const Unattributed = "system:unattributed"

// From returns the attribution WithActor put in ctx, or Unattributed.
func From(ctx context.Context) Attribution {
	if a, ok := ctx.Value(actorKey{}).(Attribution); ok && a.Actor != "" {
		return a
	}
	return Attribution{Actor: Unattributed}
}

// Attributed fills rec's actor and request id from ctx when rec has none.
func Attributed(ctx context.Context, rec Record) Record {
	if rec.Actor == "" {
		a := From(ctx)
		rec.Actor, rec.RequestID = a.Actor, a.RequestID
	}
	return rec
}
