// Command demoapp is the application `make run` puts behind nginx: it answers every request
// with the method, target, host and headers it received (development only).
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/neofast/neoauthz/internal/demoapp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	srv := &http.Server{Addr: *addr, Handler: demoapp.Handler(), ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(os.Stderr, "demoapp: echoing requests on http://%s\n", *addr)
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "demoapp:", err)
		os.Exit(1)
	}
}
