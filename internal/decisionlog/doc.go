// Package decisionlog records the pdp's decisions in the analytics database of each tenant's
// region, and reads and prunes them for the admin API and CLI.
//
// Recording never slows a decision: Record samples, rate-limits and hands the entry to a
// bounded queue without blocking; a background loop copies batches into PostgreSQL with COPY.
// When the queue is full or a database is slow or down, entries are dropped and counted
// (decision_log_dropped_total and a periodic log line), never retried in memory.
package decisionlog
