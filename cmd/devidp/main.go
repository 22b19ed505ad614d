// Command devidp is a Keycloak-shaped token issuer for local development ONLY (`make run`
// starts it): it mints a token for any subject it is asked for, in any realm.
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
	realms := flag.String("realms", "platform", "comma-separated realms created at start (any other realm is created when first asked about)")
	aud := flag.String("audience", "neoauthz", "aud and azp of minted tokens")
	keys := flag.String("keys", "", "directory keeping each realm's signing key across restarts (empty: in memory)")
	flag.Parse()
	iss, err := devidp.Start(devidp.Config{Addr: *addr, Realms: strings.Split(*realms, ","), Audience: *aud, KeyDir: *keys})
	if err != nil {
		fmt.Fprintln(os.Stderr, "devidp:", err)
		os.Exit(1)
	}
	defer iss.Close()
	fmt.Fprintf(os.Stderr, "devidp: DEVELOPMENT token issuer at %s (any realm); tokens: %s/dev/token?realm=REALM&sub=USER\n", iss.URL(), iss.URL())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}
