// Package cache is a two-tier cache (ristretto in process, then Redis) that never returns a value its caller's freshness predicate rejects.
//
// # Consistency
//
// Every cached value carries the version of the data it was computed from, and every lookup
// comes with a fresh predicate that compares that version with the newest one the caller knows
// (for the tenant or user, and the request's consistency token). A value the predicate rejects is
// a miss in L1 and in L2, whatever order writes landed in: ristretto applies Sets from a buffer,
// so an old value can land after a Del; another instance can write an old value to Redis after a
// newer one; a load that read old data can finish after the newer version became known.
// Correctness therefore never depends on Delete or DeletePrefix — they only free memory.
//
// A loaded value is checked with the predicate too. When it is already stale (the data changed
// while it was being read and the caller has heard of it), the load runs once more; if that is
// stale as well Get returns ErrStaleLoad, and a stale value is never stored.
//
// # Redis
//
// Redis is optional and never needed for a correct answer. Any Redis failure (unreachable, slow
// beyond Options.Timeout, bytes that do not decode) is an L2 miss. After a few consecutive
// failures a circuit breaker skips Redis for a backoff that doubles from one second to thirty,
// so a dead Redis does not add a timeout to every check; the first operation after the backoff
// is a probe, and a successful probe (or Ping) closes the breaker. Writes to Redis after a load
// go through a small bounded queue and are dropped when it is full, so a slow Redis does not
// slow the miss path; WaitIdle waits for them (tests).
//
// # Memory
//
// L1 is bounded in bytes (Options.L1MaxCost): an entry counts its Loaded.Cost plus the cache's
// own per-entry overhead, and ristretto's admission counters are sized from the budget. An
// entry's expiry is checked on every read, so ristretto keeps no TTL bookkeeping; an expired
// entry is never returned and stays only until replaced or evicted. An entry keeps its key to
// rule out ristretto hash collisions, the part a tenant's keys share interned once. Values
// made of parts they share (SharedCodec) count each part once, and Redis stores it once, under a
// key in the entry's hash slot that each entry names (SharedKey); a read fetches, in one round
// trip, only the parts not already in memory.
//
// # Values
//
// Values are shared between callers and with L1, and encoded for Redis in the background; they
// must not be modified after a loader returns them.
package cache
