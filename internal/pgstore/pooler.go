package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/neofast/neoauthz/internal/registry"
)

// Poolers maps a registered connection's name to the address (host:port) of the PgBouncer, in
// transaction pooling mode, that the pdp's loads from that connection's databases go through.
// LISTEN never does: it needs a session, so it keeps the registered address.
type Poolers map[string]string

// ParsePoolers reads "name=host:port,name=host:port" (spaces around entries are ignored).
// Every name must be a registered connection's name (a slug), every address a host and a port.
func ParsePoolers(s string) (Poolers, error) {
	p := Poolers{}
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, addr, ok := strings.Cut(entry, "=")
		if !ok || !registry.ValidSlug(name) {
			return nil, fmt.Errorf("pooler %q: use <connection name>=<host>:<port>, the name as registered", entry)
		}
		if _, dup := p[name]; dup {
			return nil, fmt.Errorf("pooler for connection %s is given twice", name)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || !registry.ValidHost(host) {
			return nil, fmt.Errorf("pooler of connection %s: %q is not <host>:<port>", name, addr)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("pooler of connection %s: port %q is not between 1 and 65535", name, port)
		}
		p[name] = net.JoinHostPort(host, port)
	}
	return p, nil
}

// String lists the entries in the form ParsePoolers reads, by name.
func (p Poolers) String() string {
	names := make([]string, 0, len(p))
	for n := range p {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		names[i] = n + "=" + p[n]
	}
	return strings.Join(names, ",")
}

// readOnlyParam is the startup parameter that makes every session the pdp opens directly
// read-only. PgBouncer refuses startup parameters it does not know, so pooled sessions cannot
// carry it: the pooler's own configuration sets it instead (docs/scale.md).
const readOnlyParam = "default_transaction_read_only"

// UsePooler prepares cfg for a PgBouncer in transaction pooling mode, where consecutive
// transactions of one client run on different server connections: no named prepared
// statements (pgx's default caches them per connection, and PgBouncer before 1.21 does not
// track them), so every query is sent as one Parse/Bind/Execute of the unnamed statement with
// its parameters typed from their Go types (pgx.QueryExecModeExec), in a single round trip;
// and no startup parameter PgBouncer would refuse.
func UsePooler(cfg *pgxpool.Config) {
	cc := cfg.ConnConfig
	cc.DefaultQueryExecMode = pgx.QueryExecModeExec
	cc.StatementCacheCapacity = 0
	cc.DescriptionCacheCapacity = 0
	delete(cc.RuntimeParams, readOnlyParam)
}

// NewAdminPool opens the pdp's pool on the admin database, at most maxConns connections.
// viaPooler says url is a transaction-pooling PgBouncer (see UsePooler). Errors never quote
// url, which may hold a password.
func NewAdminPool(ctx context.Context, url string, maxConns int32, viaPooler bool) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, errors.New("the connection URL does not parse")
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	cfg.MinConns = 0
	if viaPooler {
		UsePooler(cfg)
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

// throughPooler returns dsn (a URL from registry.ConnString) pointed at addr instead of the
// registered host and port; database, user, password and TLS mode stay.
func throughPooler(dsn, addr string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", errors.New("registered connection string does not parse")
	}
	u.Host = addr
	return u.String(), nil
}
