// Package pprof serves Go's runtime profiles over HTTP for the binaries that opt in (--pprof).
package pprof

import (
	"net/http"
	httppprof "net/http/pprof"
)

// Prefix is where the profiles are served.
const Prefix = "/debug/pprof/"

// Register adds the profiling endpoints to mux. Importing net/http/pprof also registers them on
// http.DefaultServeMux, which neoauthz never serves.
func Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+Prefix, httppprof.Index)
	mux.HandleFunc("GET "+Prefix+"cmdline", httppprof.Cmdline)
	mux.HandleFunc("GET "+Prefix+"profile", httppprof.Profile)
	mux.HandleFunc("GET "+Prefix+"symbol", httppprof.Symbol)
	mux.HandleFunc("POST "+Prefix+"symbol", httppprof.Symbol)
	mux.HandleFunc("GET "+Prefix+"trace", httppprof.Trace)
}
