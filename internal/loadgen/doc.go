// Package loadgen is neoauthz's load tool (cmd/loadgen, `make bench-load`). It builds (once) a
// generated data set — 50 tenants × 1,000 users, 20 roles, 150 permission codes — in databases
// of its own, starts a pdp in a child process on loopback listeners with daemon.Serve, and drives Envoy
// ext_authz and neoauthz.v1 Check at several concurrencies, cold and warm. A do-nothing
// ext_authz server, driven by the same client code in the same run, is the ceiling: our
// ext_authz throughput is reported as a ratio of it.
//
// # What it touches
//
//   - PostgreSQL (DATABASE_URL's server): only the databases neoauthz_bench_admin and
//     neoauthz_bench_us, created here; -rebuild drops and recreates exactly those two. A
//     marker row (table public.loadgen_dataset in the admin database) records the shape of the
//     data set; a run whose flags ask for the same shape reuses it.
//   - Redis (REDIS_URL): the pdp's cache keys have a fixed prefix the daemon does not let us
//     change, so the pdp under test uses a logical database of its own instead (-redis-db,
//     default 15), which is FLUSHDB'd before every fresh pdp instance so that "cold" means cold.
//     Do not point -redis-db at a database anything else uses.
//   - Network: loopback only (the pdp, the do-nothing server and the token issuer listen on
//     127.0.0.1:0).
//
// # Measurement
//
// Every phase runs `concurrency` workers, each its own closed loop (send, wait, record, send
// again) on shared gRPC connections, for -duration or -max-requests, whichever comes first.
// Users are picked with a Zipf distribution (s = 1.1) over every user of every tenant, hot
// users spread over tenants by a fixed permutation; permissions mostly from what the user's
// roles grant (allowed), sometimes anything from the catalog (mostly denied). Latencies go to a
// log-linear histogram per worker (< 1% relative error), merged at the end of the phase.
// Warm phases and the ceiling take turns in short slices (-rounds), so that load from
// neighbours on a shared machine falls on all of them alike rather than deciding the ratio.
// The client runs in this process; the pdp and the ceiling each run in a child process (this
// binary again, see child.go), so that the CPU each server spends per request can be read from
// /proc and printed beside the ceiling's. They all share the machine's CPUs, as a sidecar shares
// a node with Envoy; the ceiling pays exactly the same client costs, which is why the ratios,
// not the absolute numbers, are the figures of merit.
package loadgen
