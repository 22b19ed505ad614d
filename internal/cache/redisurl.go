package cache

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ParseRedisURL returns a client for one of these URLs (query options are go-redis' own:
// dial_timeout, read_timeout, pool_size, max_retries, skip_verify, ...):
//
//	redis://[user:password@]host[:6379][/db][?options]      standalone
//	rediss://...                                            standalone over TLS
//	unix://[user:password@]/path/to/socket[?db=N&options]   standalone over a Unix socket
//	redis-sentinel://[user:password@]host1[:26379],host2[:26379]/master[/db][?options]
//	rediss-sentinel://...                                   Sentinel, TLS to sentinels and servers
//	redis-cluster://[user:password@]host1[:6379],host2[:6379][?options]
//	rediss-cluster://...                                    Cluster over TLS
//
// For Sentinel the user and password are the Redis servers'; the sentinels' own are the
// options sentinel_username and sentinel_password, since sentinels often have none or other
// ones. Passwords must be percent-encoded. Errors never contain the URL (it holds the
// password), and the URL must not be logged either.
//
// The client applies context deadlines to socket I/O (ContextTimeoutEnabled), which the
// cache's per-operation Timeout relies on to avoid waiting in a spare goroutine.
//
// Connection buffers are smaller than go-redis' defaults (see the buffer constants below).
func ParseRedisURL(raw string) (redis.UniversalClient, error) {
	scheme, _, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, errors.New("cache: invalid redis URL: no scheme")
	}
	switch scheme {
	case "redis", "rediss", "unix":
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, redactURLError(err)
		}
		o.ContextTimeoutEnabled = true
		o.ReadBufferSize, o.WriteBufferSize = connBufferSize, connBufferSize
		o.PipelineReadBufferSize, o.PipelineWriteBufferSize = pipelineBufferSize, pipelineBufferSize
		return redis.NewClient(o), nil
	case "redis-sentinel", "rediss-sentinel":
		return parseSentinelURL(raw, scheme)
	case "redis-cluster", "rediss-cluster":
		return parseClusterURL(raw, scheme)
	}
	if schemeRE.MatchString(scheme) {
		return nil, fmt.Errorf("cache: invalid redis URL: unsupported scheme %q", scheme)
	}
	return nil, errors.New("cache: invalid redis URL: unsupported scheme")
}

// Each pooled connection has a read and a write buffer, held for as long as the connection
// is: go-redis' defaults (32 KiB per buffer, 128 KiB on its pipeline connections) keep about
// 4 MiB in a pdp whose pools have filled once, a Redis Cluster client that much per node. The
// cache's commands and replies are small (an entry, a few compiled parts, a batch of writes of
// at most a few KiB each); a longer reply is read through the buffer in several reads.
const (
	connBufferSize     = 4 << 10
	pipelineBufferSize = 16 << 10
)

// schemeRE says whether a scheme is safe to repeat in an error (it cannot be a password).
var schemeRE = regexp.MustCompile(`^[a-z][a-z0-9+.-]{0,30}$`)

// redactURLError drops the URL that net/url puts in its errors.
func redactURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	return fmt.Errorf("cache: invalid redis URL: %w", err)
}

// multiHostURL is a URL whose authority lists several hosts, which net/url cannot parse.
type multiHostURL struct {
	tls   bool
	user  *url.Userinfo
	hosts []string // host:port
	path  []string // unescaped segments
	query url.Values
}

func parseMultiHost(raw, scheme, defaultPort string) (*multiHostURL, error) {
	rest := raw[len(scheme)+len("://"):]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo := ""
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, authority = authority[:i+1], authority[i+1:]
	}
	// Parse everything but the host list with net/url, on a stand-in host.
	u, err := url.Parse("redis://" + userinfo + "hosts" + tail)
	if err != nil {
		return nil, redactURLError(err)
	}
	m := &multiHostURL{tls: strings.HasPrefix(scheme, "rediss"), user: u.User, query: u.Query()}
	for h := range strings.SplitSeq(authority, ",") {
		hu, err := url.Parse("//" + h)
		if err != nil || hu.Hostname() == "" || hu.User != nil || hu.Path != "" {
			return nil, fmt.Errorf("cache: invalid redis URL: bad host %q", h)
		}
		port := hu.Port()
		if port == "" {
			port = defaultPort
		}
		m.hosts = append(m.hosts, joinHostPort(hu.Hostname(), port))
	}
	for s := range strings.SplitSeq(u.Path, "/") {
		if s != "" {
			m.path = append(m.path, s)
		}
	}
	for _, reserved := range []string{"addr", "master_name"} {
		if m.query.Has(reserved) {
			return nil, fmt.Errorf("cache: invalid redis URL: option %s is given by the URL's hosts or path", reserved)
		}
	}
	return m, nil
}

func joinHostPort(host, port string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}

// takeBool removes a boolean option that go-redis would reject or ignore in our rewritten URL.
func (m *multiHostURL) takeBool(name string) (bool, error) {
	if !m.query.Has(name) {
		return false, nil
	}
	v := m.query.Get(name)
	m.query.Del(name)
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("cache: invalid redis URL: option %s: not a boolean", name)
	}
	return b, nil
}

// tlsConfig leaves ServerName empty so that each node's certificate is checked against that
// node's own address (crypto/tls takes it from the dialed address); go-redis' URL parsers
// would pin every node to the first host's name.
func (m *multiHostURL) tlsConfig(skipVerify bool) *tls.Config {
	if !m.tls {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: skipVerify} //nolint:gosec // only when the URL asks
}

func parseSentinelURL(raw, scheme string) (redis.UniversalClient, error) {
	m, err := parseMultiHost(raw, scheme, "26379")
	if err != nil {
		return nil, err
	}
	if len(m.path) == 0 || len(m.path) > 2 {
		return nil, errors.New("cache: invalid redis URL: Sentinel URLs need /<master name>[/<db>]")
	}
	if len(m.path) == 2 {
		if m.query.Has("db") {
			return nil, errors.New("cache: invalid redis URL: db given twice")
		}
		m.query.Set("db", m.path[1])
	}
	skip, err := m.takeBool("skip_verify")
	if err != nil {
		return nil, err
	}
	sentinelUser, sentinelPass := m.query.Get("sentinel_username"), m.query.Get("sentinel_password")
	m.query.Del("sentinel_username")
	m.query.Del("sentinel_password")
	m.query.Del("context_timeout_enabled") // always on, see ParseRedisURL

	// go-redis parses the remaining options.
	o, err := redis.ParseFailoverURL("redis://" + m.hosts[0] + "/?" + m.query.Encode())
	if err != nil {
		return nil, redactURLError(err)
	}
	o.MasterName = m.path[0]
	o.SentinelAddrs = m.hosts
	o.SentinelUsername, o.SentinelPassword = sentinelUser, sentinelPass
	if m.user != nil {
		o.Username = m.user.Username()
		o.Password, _ = m.user.Password()
	}
	o.TLSConfig = m.tlsConfig(skip)
	o.ContextTimeoutEnabled = true
	o.ReadBufferSize, o.WriteBufferSize = connBufferSize, connBufferSize
	o.PipelineReadBufferSize, o.PipelineWriteBufferSize = pipelineBufferSize, pipelineBufferSize
	return redis.NewFailoverClient(o), nil
}

func parseClusterURL(raw, scheme string) (redis.UniversalClient, error) {
	m, err := parseMultiHost(raw, scheme, "6379")
	if err != nil {
		return nil, err
	}
	if len(m.path) > 0 || m.query.Has("db") {
		return nil, errors.New("cache: invalid redis URL: Redis Cluster has no databases")
	}
	skip, err := m.takeBool("skip_verify")
	if err != nil {
		return nil, err
	}
	o, err := redis.ParseClusterURL("redis://" + m.hosts[0] + "?" + m.query.Encode())
	if err != nil {
		return nil, redactURLError(err)
	}
	o.Addrs = m.hosts
	if m.user != nil {
		o.Username = m.user.Username()
		o.Password, _ = m.user.Password()
	}
	o.TLSConfig = m.tlsConfig(skip)
	o.ContextTimeoutEnabled = true
	o.ReadBufferSize, o.WriteBufferSize = connBufferSize, connBufferSize
	o.PipelineReadBufferSize, o.PipelineWriteBufferSize = pipelineBufferSize, pipelineBufferSize
	return redis.NewClusterClient(o), nil
}
