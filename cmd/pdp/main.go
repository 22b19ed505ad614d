// Command pdp is the neoauthz policy decision point: Envoy ext_authz, HTTP forward auth and the
// neoauthz.v1 gRPC API (flags and environment: `pdp -h`, README "Configuration reference").
// `pdp probe [URL]` checks a running pdp's /health (for images without a shell).
// `pdp relay` listens for the RBAC notifications and republishes them through Redis for pdps
// run with -sync=relay (flags: `pdp relay -h`).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/neofast/neoauthz/internal/daemon"
	"github.com/neofast/neoauthz/internal/probe"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		url := "http://127.0.0.1:8181/health"
		if len(os.Args) > 2 {
			url = os.Args[2]
		}
		if err := probe.Check(context.Background(), url, 3*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "pdp probe:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "relay" {
		os.Exit(relay(os.Args[2:]))
	}
	cfg := daemon.DefaultConfig()
	fs := flag.NewFlagSet("pdp", flag.ExitOnError)
	cfg.RegisterFlags(fs)
	_ = fs.Parse(os.Args[1:])
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "pdp: configuration:", err)
		os.Exit(2)
	}
	log := cfg.Logger()
	daemon.ApplyMemoryLimit(cfg.MemoryLimit, log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := daemon.Run(ctx, cfg, log); err != nil {
		fmt.Fprintln(os.Stderr, "pdp:", err)
		os.Exit(1)
	}
}

func relay(args []string) int {
	cfg := daemon.DefaultRelayConfig()
	fs := flag.NewFlagSet("pdp relay", flag.ExitOnError)
	cfg.RegisterFlags(fs)
	_ = fs.Parse(args)
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "pdp relay: configuration:", err)
		return 2
	}
	log := cfg.Logger()
	daemon.ApplyMemoryLimit(cfg.MemoryLimit, log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := daemon.RunRelay(ctx, cfg, log); err != nil {
		fmt.Fprintln(os.Stderr, "pdp relay:", err)
		return 1
	}
	return 0
}
