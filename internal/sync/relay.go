package sync

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// A relay is a Manager with a Publisher: it listens as a pdp does and publishes what it
// hears, so that pdps in relay mode (a Manager with a Feed) hold no PostgreSQL connection of
// their own for notifications. The guarantee stays that of a listener (DESIGN §4): a pdp
// trusts a database only while some relay has proved, no longer ago than Config.Staleness,
// that its listener to the database is alive and that everything it heard before is
// published; otherwise the database is down, as after a lost listener.

// EventKind says what a relay's publication means.
type EventKind uint8

// Event kinds.
const (
	// EventNotified carries a notification's payload as the relay's listener received it.
	EventNotified EventKind = iota + 1
	// EventAlive says the relay's listener answered its liveness probe.
	EventAlive
	// EventResynced carries every version of the database, read after a listener session
	// started listening: it covers whatever was lost before the session.
	EventResynced
	// EventRaised carries versions the relay's poll found beyond what notifications said.
	EventRaised
	// EventDown says the relay's listener to the database was lost.
	EventDown
)

// live reports whether an event proves the relay's listener alive at its time.
func (k EventKind) live() bool {
	return k == EventNotified || k == EventAlive || k == EventResynced
}

// Event is one publication of a relay about one database.
type Event struct {
	Kind EventKind
	// Database is the database key (AdminDatabase, or DatabaseKey of a registered one).
	Database string
	// Relay names the relay that published it (set by the feed).
	Relay string
	// At is when the relay published it.
	At time.Time
	// Payload is the notification's payload (EventNotified).
	Payload string
	// Versions maps a scope (a tenant id; PlatformScope for the admin database) to its version
	// (EventResynced, EventRaised).
	Versions map[string]uint64
}

// Publisher is where a relay publishes events; each listener publishes its own in the order
// it heard them.
type Publisher interface {
	Publish(ctx context.Context, ev Event) error
}

// Feed is where a pdp in relay mode reads the relays' events, in the order they were
// published.
type Feed interface {
	// Next waits up to wait for events after the last ones returned. gap reports that events
	// may have been lost since (the stream was trimmed past them, or it restarted): the feed
	// then starts again from what is published next.
	Next(ctx context.Context, wait time.Duration) (events []Event, gap bool, err error)
}

// errPublishFailed ends a listener session after a publication for its database failed
// elsewhere (the poll).
var errPublishFailed = errors.New("an earlier publication for this database failed")

// publish publishes ev when the Manager is a relay. It fails when an earlier publication for
// the database failed, so the session ends and the next one's versions cover the loss.
func (m *Manager) publish(ctx context.Context, ev Event) error {
	if m.cfg.Publish == nil {
		return nil
	}
	if _, failed := m.pubFailed.LoadAndDelete(ev.Database); failed {
		return errPublishFailed
	}
	ev.At = time.Now()
	if err := m.cfg.Publish.Publish(ctx, ev); err != nil {
		m.metrics.publishErrors.Inc()
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

// publishDown tells pdps, as far as Redis lets it, that a listener was lost, so they stop
// counting on this relay for the database before its heartbeat would go stale.
func (m *Manager) publishDown(db string) {
	if m.cfg.Publish == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Heartbeat)
	defer cancel()
	if err := m.cfg.Publish.Publish(ctx, Event{Kind: EventDown, Database: db, At: time.Now()}); err != nil {
		m.metrics.publishErrors.Inc()
	}
}

// follower is a relay-mode pdp's view of each database.
type follower struct {
	// trust holds, per database and relay, until when that relay's last proof of life
	// makes the database trusted.
	trust map[string]map[string]time.Time
	// resynced holds the databases whose versions were read since they were last down.
	resynced map[string]bool
	// failing is set while the feed fails, to log an outage once.
	failing bool
}

// follow reads the relays' events instead of listening, until ctx ends. A database is up
// while a relay's last proof of life for it is younger than Config.Staleness and its versions
// were re-read from PostgreSQL after the feed's position was taken; the Floors end the trust
// at that moment by themselves, even when this loop is stuck.
func (m *Manager) follow(ctx context.Context) {
	f := &follower{trust: map[string]map[string]time.Time{}, resynced: map[string]bool{}}
	backoff := minBackoff
	for ctx.Err() == nil {
		events, gap, err := m.cfg.Feed.Next(ctx, m.cfg.Heartbeat)
		now := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !f.failing {
				m.log.Warn("cannot read the relay stream; databases turn stale as their heartbeats age", "error", err)
				f.failing = true
			}
			m.sweep(ctx, f, now)
			backoff = nextBackoff(backoff, false, m.cfg.MaxBackoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		if f.failing {
			m.log.Info("reading the relay stream again")
			f.failing = false
		}
		backoff = minBackoff
		if gap {
			m.log.Warn("the relay stream lost events this pdp had not read; every database is stale until its versions are re-read")
			m.metrics.feedGaps.Inc()
			clear(f.trust)
			for key := range f.resynced {
				m.markDown(key, now)
			}
			clear(f.resynced)
		}
		for _, ev := range events {
			m.follow1(f, ev, now)
		}
		m.sweep(ctx, f, time.Now())
	}
}

// follow1 applies one event, through the same paths a listener's notifications and resyncs
// take. Events about databases this pdp does not know are skipped: nothing cached from such a
// database is trusted anyway, and its versions are read once the registry names it.
func (m *Manager) follow1(f *follower, ev Event, now time.Time) {
	m.mu.Lock()
	db, known := m.known[ev.Database]
	m.mu.Unlock()
	if !known {
		return
	}
	switch ev.Kind {
	case EventNotified:
		if err := m.handle(db, ev.Payload); err != nil {
			m.log.Warn("cannot re-read versions after an unreadable notification", "database", db.Key, "error", err)
			m.markDown(db.Key, now)
			delete(f.resynced, db.Key)
		}
	case EventResynced, EventRaised:
		m.applyVersions(db.Key, ev.Versions)
	}
	switch {
	case ev.Kind.live():
		// A relay whose clock runs ahead does not stretch the trust.
		until := ev.At
		if until.After(now) {
			until = now
		}
		until = until.Add(m.cfg.Staleness)
		byRelay := f.trust[db.Key]
		if byRelay == nil {
			byRelay = map[string]time.Time{}
			f.trust[db.Key] = byRelay
		}
		if until.After(byRelay[ev.Relay]) {
			byRelay[ev.Relay] = until
		}
	case ev.Kind == EventDown:
		delete(f.trust[db.Key], ev.Relay)
	}
}

// sweep marks each known database up until its freshest relay heartbeat ages past the
// bound (re-reading its versions first when it was down), or down.
func (m *Manager) sweep(ctx context.Context, f *follower, now time.Time) {
	m.mu.Lock()
	dbs := make([]Database, 0, len(m.known))
	for _, db := range m.known {
		dbs = append(dbs, db)
	}
	m.mu.Unlock()
	seen := make(map[string]bool, len(dbs))
	for _, db := range dbs {
		seen[db.Key] = true
		if _, down := m.floors.DownSince(db.Key); down && f.resynced[db.Key] {
			// Its trust ran out before this loop came round (the feed was stuck or slow):
			// whatever heartbeat came since, the versions are read again first.
			m.log.Warn("relay heartbeat went stale; cached data from this database is stale until its versions are re-read", "database", db.Key)
			m.markDown(db.Key, now)
			delete(f.resynced, db.Key)
		}
		var until time.Time
		for relay, t := range f.trust[db.Key] {
			if !t.After(now) {
				delete(f.trust[db.Key], relay)
				continue
			}
			if t.After(until) {
				until = t
			}
		}
		if until.IsZero() {
			if f.resynced[db.Key] {
				m.log.Warn("no fresh relay heartbeat; cached data from this database is stale until one comes", "database", db.Key)
				m.markDown(db.Key, now)
				delete(f.resynced, db.Key)
			}
			continue
		}
		if !f.resynced[db.Key] {
			// The feed's position precedes this read: a change committed after it is in
			// the versions or in an event still to come, never in neither.
			if _, err := m.resync(ctx, db); err != nil {
				if ctx.Err() == nil {
					m.log.Warn("cannot re-read versions; the database stays stale", "database", db.Key, "error", err)
				}
				continue
			}
			f.resynced[db.Key] = true
			m.metrics.up.WithLabelValues(db.Key).Set(1)
		}
		m.floors.MarkUpUntil(db.Key, until)
	}
	for key := range f.trust {
		if !seen[key] {
			delete(f.trust, key)
		}
	}
	for key := range f.resynced {
		if !seen[key] {
			delete(f.resynced, key)
		}
	}
}

// markDown distrusts a database from now on (or from when its trust ran out, if earlier).
func (m *Manager) markDown(key string, now time.Time) {
	m.floors.MarkDown(key, now)
	m.metrics.up.WithLabelValues(key).Set(0)
}
