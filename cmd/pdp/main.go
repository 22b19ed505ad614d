// Command pdp is the neoauthz policy decision point: Envoy ext_authz, HTTP forward auth and the
// neoauthz.v1 gRPC API (flags and environment: `pdp -h`, README "Configuration reference").
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/neofast/neoauthz/internal/daemon"
)

func main() {
	cfg := daemon.DefaultConfig()
	fs := flag.NewFlagSet("pdp", flag.ExitOnError)
	cfg.RegisterFlags(fs)
	_ = fs.Parse(os.Args[1:])
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "pdp: configuration:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := daemon.Run(ctx, cfg, cfg.Logger()); err != nil {
		fmt.Fprintln(os.Stderr, "pdp:", err)
		os.Exit(1)
	}
}
