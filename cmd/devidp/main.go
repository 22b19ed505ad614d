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
	keys := flag.String("keys", "", "directory keeping each realm's signing key (and realms made through the admin API) across restarts (empty: in memory)")
	adminRealm := flag.String("admin-realm", "master", "realm of the admin API's service account")
	adminClient := flag.String("admin-client", "", "client id of the admin API's service account (empty: the admin API refuses every call)")
	adminSecretFile := flag.String("admin-secret-file", "", "file holding the service account's secret")
	flag.Parse()
	cfg := devidp.Config{Addr: *addr, Realms: strings.Split(*realms, ","), Audience: *aud, KeyDir: *keys,
		AdminRealm: *adminRealm, AdminClientID: *adminClient}
	if *adminClient != "" {
		b, err := os.ReadFile(*adminSecretFile)
		if err != nil || len(strings.TrimSpace(string(b))) == 0 {
			fmt.Fprintln(os.Stderr, "devidp: --admin-client needs --admin-secret-file naming a file with the secret")
			os.Exit(2)
		}
		cfg.AdminSecret = strings.TrimSpace(string(b))
	}
	iss, err := devidp.Start(cfg)
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
