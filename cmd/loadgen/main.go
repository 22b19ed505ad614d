// Command loadgen is neoauthz's load tool (`make bench-load`): a generated data set, a pdp in
// process, Envoy ext_authz and neoauthz.v1 Check at several concurrencies, cold and warm,
// against a do-nothing ext_authz server as the ceiling. See internal/loadgen.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/neofast/neoauthz/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := loadgen.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
