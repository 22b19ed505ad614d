// Command admin is the neoauthz control plane: migrations, regions, the database registry and
// tenants (see `admin help`).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/neofast/neoauthz/internal/admincli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := admincli.Run(ctx, os.Args[1:], admincli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "admin:", err)
	if errors.Is(err, admincli.ErrUsage) {
		os.Exit(2)
	}
	os.Exit(1)
}
