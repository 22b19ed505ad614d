//go:build race

package authn_test

// raceEnabled: the race detector makes sync.Pool drop items, so pooled paths allocate.
const raceEnabled = true
