// Package memtest measures in tests what a structure retains on the Go heap.
package memtest

import "runtime"

// Retained is the live heap (bytes and objects) of what build returns: the difference between
// the heap while it is held and once it is dropped, each after a full collection, so that
// garbage left by earlier tests and what build allocated only for a while do not count.
func Retained(build func() any) (bytes, objects int64) {
	var held, dropped runtime.MemStats
	runtime.GC()
	x := build()
	runtime.GC()
	runtime.ReadMemStats(&held)
	runtime.KeepAlive(x)
	runtime.GC()
	runtime.ReadMemStats(&dropped)
	return int64(held.HeapAlloc) - int64(dropped.HeapAlloc), int64(held.HeapObjects) - int64(dropped.HeapObjects)
}
