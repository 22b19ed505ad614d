// Package relay carries the sync events of relays to pdps over a Redis stream: relays append
// (XADD, bounded with MAXLEN ~), every pdp reads from its last id (XREAD BLOCK) and detects
// when the stream was trimmed past it or restarted.
package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	authzsync "github.com/neofast/neoauthz/internal/sync"
)

// Defaults of the stream.
const (
	// DefaultStream is the stream's key. One key: a Cluster keeps it in one slot (the braces
	// name the slot should companion keys ever be added).
	DefaultStream = "neoauthz:{relay}:events"
	// DefaultMaxLen is about how many events the stream keeps (MAXLEN ~). A pdp that falls
	// further behind than this re-reads versions from PostgreSQL.
	DefaultMaxLen = 100_000
	// readCount is the most events one read returns.
	readCount = 1000
)

// Bounds of what an event may carry, checked when it is read.
const (
	maxKeyLen     = 200
	maxPayloadLen = 8000 // PostgreSQL's NOTIFY payload limit
	maxVersions   = 1 << 20
)

// Field names and kinds in a stream entry.
const (
	fKind     = "k"
	fDatabase = "db"
	fRelay    = "r"
	fAt       = "at"
	fPayload  = "p"
	fVersions = "v"
)

var kinds = map[authzsync.EventKind]string{
	authzsync.EventNotified: "n",
	authzsync.EventAlive:    "a",
	authzsync.EventResynced: "s",
	authzsync.EventRaised:   "v",
	authzsync.EventDown:     "d",
}

func kindOf(s string) (authzsync.EventKind, bool) {
	for k, v := range kinds {
		if v == s {
			return k, true
		}
	}
	return 0, false
}

// Publisher appends a relay's events to the stream.
type Publisher struct {
	rdb     redis.UniversalClient
	key     string
	maxLen  int64
	id      string
	timeout time.Duration
}

var _ authzsync.Publisher = (*Publisher)(nil)

// NewPublisher returns a publisher with a fresh relay id; each append waits at most timeout.
func NewPublisher(rdb redis.UniversalClient, key string, maxLen int64, timeout time.Duration) *Publisher {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &Publisher{rdb: rdb, key: key, maxLen: maxLen, id: hex.EncodeToString(b), timeout: timeout}
}

// ID is the relay's id in its events.
func (p *Publisher) ID() string { return p.id }

// Publish appends ev.
func (p *Publisher) Publish(ctx context.Context, ev authzsync.Event) error {
	values := []any{fKind, kinds[ev.Kind], fDatabase, ev.Database, fRelay, p.id, fAt, strconv.FormatInt(ev.At.UnixMicro(), 10)}
	if ev.Kind == authzsync.EventNotified {
		values = append(values, fPayload, ev.Payload)
	}
	if ev.Versions != nil {
		b, err := json.Marshal(ev.Versions)
		if err != nil {
			return err
		}
		values = append(values, fVersions, string(b))
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	return p.rdb.XAdd(ctx, &redis.XAddArgs{Stream: p.key, MaxLen: p.maxLen, Approx: true, Values: values}).Err()
}

// Reader reads the stream from where it last stopped. Not safe for concurrent use.
type Reader struct {
	rdb redis.UniversalClient
	key string
	// last is the id of the last entry read, or "$" before the first read (and after a gap).
	last string
}

var _ authzsync.Feed = (*Reader)(nil)

// NewReader returns a reader that starts with what is published after its first read begins.
func NewReader(rdb redis.UniversalClient, key string) *Reader {
	return &Reader{rdb: rdb, key: key, last: "$"}
}

// Next implements authzsync.Feed.
func (r *Reader) Next(ctx context.Context, wait time.Duration) ([]authzsync.Event, bool, error) {
	from := r.last
	res, err := r.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{r.key, from}, Count: readCount,
		Block: max(wait, time.Millisecond)}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, false, err
	}
	var msgs []redis.XMessage
	if len(res) > 0 {
		msgs = res[0].Messages
	}
	if from != "$" {
		// Checked after the read: while the entry read from is still the stream's first or
		// later, nothing after it was trimmed before the read.
		gap, err := r.gapAfter(ctx, from)
		if err != nil {
			return nil, false, err
		}
		if gap {
			r.last = "$"
			return nil, true, nil
		}
	}
	if len(msgs) == 0 {
		return nil, false, nil
	}
	r.last = msgs[len(msgs)-1].ID
	events := make([]authzsync.Event, 0, len(msgs))
	for _, msg := range msgs {
		ev, err := decode(msg.Values)
		if err != nil {
			// An entry that cannot be read may be a notification: treat it as lost.
			r.last = "$"
			return nil, true, nil
		}
		events = append(events, ev)
	}
	return events, false, nil
}

// gapAfter reports whether entries following id may have left the stream: it was trimmed
// past id, deleted, or started again (after a Redis restart) below id.
func (r *Reader) gapAfter(ctx context.Context, id string) (bool, error) {
	info, err := r.rdb.XInfoStream(ctx, r.key).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return true, nil
		}
		return false, err
	}
	if less(info.LastGeneratedID, id) {
		return true, nil
	}
	if info.Length == 0 {
		return less(id, info.LastGeneratedID), nil
	}
	return less(id, info.FirstEntry.ID), nil
}

// less compares stream ids ("<ms>-<seq>"); an unreadable id counts as lower.
func less(a, b string) bool {
	am, as, aok := parseID(a)
	bm, bs, bok := parseID(b)
	if !aok || !bok {
		return !aok && bok
	}
	return am < bm || am == bm && as < bs
}

func parseID(id string) (uint64, uint64, bool) {
	ms, seq, ok := strings.Cut(id, "-")
	if !ok {
		return 0, 0, false
	}
	m, err1 := strconv.ParseUint(ms, 10, 64)
	s, err2 := strconv.ParseUint(seq, 10, 64)
	return m, s, err1 == nil && err2 == nil
}

// decode reads one entry, checking every field's length and grammar.
func decode(values map[string]any) (authzsync.Event, error) {
	str := func(name string, limit int) (string, error) {
		v, ok := values[name].(string)
		if !ok {
			return "", fmt.Errorf("relay: entry without %q", name)
		}
		if len(v) > limit {
			return "", fmt.Errorf("relay: %q longer than %d bytes", name, limit)
		}
		return v, nil
	}
	var ev authzsync.Event
	k, err := str(fKind, 1)
	if err != nil {
		return ev, err
	}
	kind, ok := kindOf(k)
	if !ok {
		return ev, fmt.Errorf("relay: unknown kind %q", k)
	}
	ev.Kind = kind
	if ev.Database, err = str(fDatabase, maxKeyLen); err != nil {
		return ev, err
	}
	if ev.Relay, err = str(fRelay, maxKeyLen); err != nil {
		return ev, err
	}
	at, err := str(fAt, 20)
	if err != nil {
		return ev, err
	}
	us, err := strconv.ParseInt(at, 10, 64)
	if err != nil {
		return ev, fmt.Errorf("relay: time %q", at)
	}
	ev.At = time.UnixMicro(us)
	if kind == authzsync.EventNotified {
		if ev.Payload, err = str(fPayload, maxPayloadLen); err != nil {
			return ev, err
		}
	}
	if kind == authzsync.EventResynced || kind == authzsync.EventRaised {
		raw, err := str(fVersions, maxVersions*100)
		if err != nil {
			return ev, err
		}
		if err := json.Unmarshal([]byte(raw), &ev.Versions); err != nil {
			return ev, fmt.Errorf("relay: versions: %w", err)
		}
	}
	return ev, nil
}
