// Command devidp is a Keycloak-shaped token issuer for local development ONLY (`make run`
// starts it): it mints a token for any subject it is asked for.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/neofast/neoauthz/internal/devidp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8180", "loopback address to listen on")
	realms := flag.String("realms", "platform", "comma-separated realms to serve")
	aud := flag.String("audience", "neoauthz", "aud and azp of minted tokens")
	flag.Parse()
	iss, err := devidp.Start(devidp.Config{Addr: *addr, Realms: strings.Split(*realms, ","), Audience: *aud})
	if err != nil {
		fmt.Fprintln(os.Stderr, "devidp:", err)
		os.Exit(1)
	}
	defer iss.Close()
	fmt.Fprintf(os.Stderr, "devidp: DEVELOPMENT token issuer at %s (realms %s); tokens: %s/dev/token?realm=REALM&sub=USER\n", iss.URL(), *realms, iss.URL())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}
