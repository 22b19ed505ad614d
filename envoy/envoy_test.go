package envoy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/neofast/neoauthz/internal/blockyaml"

	// Every type named by an "@type" in envoy.yaml must be registered, or protojson
	// cannot resolve the Any. Add the package here when envoy.yaml uses a new extension.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
)

const (
	extAuthzFilter = "envoy.filters.http.ext_authz"
	hcmFilter      = "envoy.filters.network.http_connection_manager"
	pdpCluster     = "neoauthz_pdp"
)

// loadBootstrap parses a bootstrap the way Envoy does: unknown fields are errors (also
// inside every Any), and every message, including each Any's content, must pass its
// protoc-gen-validate rules.
func loadBootstrap(src []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := blockyaml.ToJSON(src)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, b); err != nil {
		return nil, fmt.Errorf("protojson: %w", err)
	}
	if err := validateTree(b, "bootstrap"); err != nil {
		return nil, err
	}
	return b, nil
}

type validator interface{ ValidateAll() error }

// validateTree runs ValidateAll on m and on the content of every Any below it: the
// generated validators check an Any's type URL but do not look inside.
func validateTree(m proto.Message, path string) error {
	var errs []error
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	var walk func(r protoreflect.Message, path string)
	walk = func(r protoreflect.Message, path string) {
		if a, ok := r.Interface().(*anypb.Any); ok {
			inner, err := a.UnmarshalNew()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", path, err))
				return
			}
			if err := validateTree(inner, path+"<"+a.GetTypeUrl()+">"); err != nil {
				errs = append(errs, err)
			}
			return
		}
		r.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			p := path + "." + string(fd.Name())
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", p, i))
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(mv.Message(), fmt.Sprintf("%s[%v]", p, k))
					return true
				})
			case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
				walk(v.Message(), p)
			}
			return true
		})
	}
	walk(m.ProtoReflect(), path)
	return errors.Join(errs...)
}

func readBootstrap(t *testing.T) []byte {
	t.Helper()
	src, err := os.ReadFile("envoy.yaml")
	require.NoError(t, err)
	return src
}

// httpConnectionManager returns the HCM of the only listener.
func httpConnectionManager(t *testing.T, b *bootstrapv3.Bootstrap) *hcmv3.HttpConnectionManager {
	t.Helper()
	listeners := b.GetStaticResources().GetListeners()
	require.Len(t, listeners, 1)
	l := listeners[0]
	assert.Equal(t, "0.0.0.0", l.GetAddress().GetSocketAddress().GetAddress())
	assert.Equal(t, uint32(10000), l.GetAddress().GetSocketAddress().GetPortValue())
	require.Len(t, l.GetFilterChains(), 1)
	filters := l.GetFilterChains()[0].GetFilters()
	require.Len(t, filters, 1)
	require.Equal(t, hcmFilter, filters[0].GetName())
	hcm := &hcmv3.HttpConnectionManager{}
	require.NoError(t, filters[0].GetTypedConfig().UnmarshalTo(hcm))
	return hcm
}

func routesByName(t *testing.T, hcm *hcmv3.HttpConnectionManager) map[string]*routev3.Route {
	t.Helper()
	vhosts := hcm.GetRouteConfig().GetVirtualHosts()
	require.Len(t, vhosts, 1)
	routes := map[string]*routev3.Route{}
	for _, r := range vhosts[0].GetRoutes() {
		require.NotEmpty(t, r.GetName(), "every route is named so that its stats and logs are readable")
		routes[r.GetName()] = r
	}
	return routes
}

// perRouteExtAuthz returns the route's ext_authz settings, or nil when it has none.
func perRouteExtAuthz(t *testing.T, r *routev3.Route) *extauthzv3.ExtAuthzPerRoute {
	t.Helper()
	a, ok := r.GetTypedPerFilterConfig()[extAuthzFilter]
	if !ok {
		return nil
	}
	pr := &extauthzv3.ExtAuthzPerRoute{}
	require.NoError(t, a.UnmarshalTo(pr))
	return pr
}

func TestBootstrapLoadsAndValidates(t *testing.T) {
	_, err := loadBootstrap(readBootstrap(t))
	require.NoError(t, err)
}

func TestExtAuthzFilter(t *testing.T) {
	b, err := loadBootstrap(readBootstrap(t))
	require.NoError(t, err)
	hcm := httpConnectionManager(t, b)

	var names []string
	var ea *extauthzv3.ExtAuthz
	for _, f := range hcm.GetHttpFilters() {
		names = append(names, f.GetName())
		if f.GetName() == extAuthzFilter {
			ea = &extauthzv3.ExtAuthz{}
			require.NoError(t, f.GetTypedConfig().UnmarshalTo(ea))
		}
	}
	want := []string{"envoy.filters.http.header_mutation", extAuthzFilter, "envoy.filters.http.router"}
	require.Equal(t, want, names, "got filters %v, want %v", names, want)
	require.NotNil(t, ea)

	assert.False(t, ea.GetFailureModeAllow(), "failure_mode_allow must be false: fail closed")
	assert.Equal(t, corev3.ApiVersion_V3, ea.GetTransportApiVersion())
	assert.True(t, ea.GetIncludePeerCertificate())
	assert.Nil(t, ea.GetWithRequestBody(), "the pdp needs no request body")
	assert.Nil(t, ea.GetHttpService())
	gs := ea.GetGrpcService()
	require.NotNil(t, gs)
	assert.Equal(t, pdpCluster, gs.GetEnvoyGrpc().GetClusterName())
	got := gs.GetTimeout().AsDuration()
	assert.Equal(t, 250*time.Millisecond, got, "got timeout %v, want 250ms", got)

	// Headers the pdp may set on the upstream request: exactly the identity headers.
	rules := ea.GetDecoderHeaderMutationRules()
	require.NotNil(t, rules)
	assert.True(t, rules.GetDisallowAll().GetValue())
	assert.Nil(t, rules.GetAllowAllRouting())
	assert.Nil(t, rules.GetAllowEnvoy())
	allow, err := regexp.Compile(rules.GetAllowExpression().GetRegex()) // RE2, as in Envoy
	require.NoError(t, err)
	for h, ok := range map[string]bool{
		"x-neoauthz-tenant":       true,
		"x-neoauthz-user":         true,
		"x-neoauthz-decision-id":  true,
		"x-neoauthz-user-admin":   false,
		"x-neoauthz-tenants":      false,
		"authorization":           false,
		"x-envoy-original-path":   false,
		"prefix-x-neoauthz-user":  false,
		"x-neoauthz-tenant\nfoo:": false,
	} {
		assert.Equal(t, ok, allow.MatchString(h), "pdp may set %q: got %v, want %v", h, !ok, ok)
	}

	// Headers sent to the pdp: the credentials, not the cookies.
	var sent []string
	for _, m := range ea.GetAllowedHeaders().GetPatterns() {
		sent = append(sent, m.GetExact())
	}
	assert.Contains(t, sent, "authorization")
	assert.NotContains(t, sent, "cookie")
}

func TestRoutes(t *testing.T) {
	b, err := loadBootstrap(readBootstrap(t))
	require.NoError(t, err)
	routes := routesByName(t, httpConnectionManager(t, b))

	tests := []struct {
		name      string
		path      string // match.path, or match.prefix when prefix is set
		prefix    bool
		disabled  bool
		extension map[string]string // want check_settings.context_extensions
	}{
		{name: "healthz", path: "/healthz", disabled: true},
		{name: "users_list", path: "/api/users", extension: map[string]string{"permission": "users.read.tenant"}},
		{name: "api", path: "/api/", prefix: true},
	}
	require.Len(t, routes, len(tests))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := routes[tc.name]
			require.NotNil(t, r, "route %s is missing", tc.name)
			if tc.prefix {
				assert.Equal(t, tc.path, r.GetMatch().GetPrefix())
			} else {
				assert.Equal(t, tc.path, r.GetMatch().GetPath())
			}
			assert.Equal(t, "app", r.GetRoute().GetCluster())

			pr := perRouteExtAuthz(t, r)
			if tc.disabled {
				require.NotNil(t, pr)
				assert.True(t, pr.GetDisabled(), "route %s: got ext_authz enabled, want disabled", tc.name)
				return
			}
			// Any other route is checked.
			assert.False(t, pr.GetDisabled(), "route %s: got ext_authz disabled, want enabled", tc.name)
			got := pr.GetCheckSettings().GetContextExtensions()
			if tc.extension == nil {
				assert.Empty(t, got, "route %s relies on the pdp's route table", tc.name)
				return
			}
			assert.Equal(t, tc.extension, got)
		})
	}

	// A permission pinned on a route must not cover writes.
	var methods []string
	for _, h := range routes["users_list"].GetMatch().GetHeaders() {
		if h.GetName() == ":method" {
			methods = append(methods, h.GetStringMatch().GetExact())
		}
	}
	assert.Equal(t, []string{"GET"}, methods)
}

func TestClusters(t *testing.T) {
	b, err := loadBootstrap(readBootstrap(t))
	require.NoError(t, err)
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}

	endpoint := func(t *testing.T, c *clusterv3.Cluster) (string, uint32) {
		t.Helper()
		eps := c.GetLoadAssignment().GetEndpoints()
		require.Len(t, eps, 1)
		require.Len(t, eps[0].GetLbEndpoints(), 1)
		sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		return sa.GetAddress(), sa.GetPortValue()
	}

	pdp := clusters[pdpCluster]
	require.NotNil(t, pdp)
	addr, port := endpoint(t, pdp)
	assert.Equal(t, "127.0.0.1", addr)
	assert.Equal(t, uint32(9191), port)
	opts, ok := pdp.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	require.True(t, ok, "the pdp cluster needs HTTP/2 protocol options for gRPC")
	hpo := &upstreamhttpv3.HttpProtocolOptions{}
	require.NoError(t, opts.UnmarshalTo(hpo))
	assert.NotNil(t, hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions(), "gRPC needs HTTP/2 to the pdp")

	app := clusters["app"]
	require.NotNil(t, app)
	addr, port = endpoint(t, app)
	assert.Equal(t, "127.0.0.1", addr)
	assert.Equal(t, uint32(8080), port)
}

// TestRoutesFitTheDemo: every route of make run's route table (deploy/routes.json) is
// reached through envoy.yaml, checked by the pdp unless the table makes it public, and a public
// route is the only kind with ext_authz disabled.
func TestRoutesFitTheDemo(t *testing.T) {
	b, err := loadBootstrap(readBootstrap(t))
	require.NoError(t, err)
	vhost := httpConnectionManager(t, b).GetRouteConfig().GetVirtualHosts()[0]
	src, err := os.ReadFile("../deploy/routes.json")
	require.NoError(t, err)
	var demo struct {
		Routes []struct {
			Method string `json:"method"`
			Path   string `json:"path"`
			Public bool   `json:"public"`
		} `json:"routes"`
	}
	require.NoError(t, json.Unmarshal(src, &demo))
	require.NotEmpty(t, demo.Routes)
	param := regexp.MustCompile(`\{[^}]+\}`)
	for _, dr := range demo.Routes {
		path := param.ReplaceAllString(dr.Path, "x")
		var match *routev3.Route
		for _, r := range vhost.GetRoutes() { // first match wins, as in Envoy
			m := r.GetMatch()
			if (m.GetPath() != "" && m.GetPath() == path) || (m.GetPrefix() != "" && strings.HasPrefix(path, m.GetPrefix())) {
				if methodMatches(r, dr.Method) {
					match = r
					break
				}
			}
		}
		require.NotNil(t, match, "%s %s reaches no route of envoy.yaml", dr.Method, dr.Path)
		pr := perRouteExtAuthz(t, match)
		assert.Equal(t, dr.Public, pr != nil && pr.GetDisabled(), "%s %s: route %s, public %v", dr.Method, dr.Path, match.GetName(), dr.Public)
		assert.Equal(t, "app", match.GetRoute().GetCluster())
	}
}

func methodMatches(r *routev3.Route, method string) bool {
	for _, h := range r.GetMatch().GetHeaders() {
		if h.GetName() == ":method" && h.GetStringMatch().GetExact() != method {
			return false
		}
	}
	return true
}

// TestLoadRejectsMistakes makes sure the loader is strict enough for the tests above to
// mean something: a typo anywhere, including inside an Any, must fail.
func TestLoadRejectsMistakes(t *testing.T) {
	src := string(readBootstrap(t))
	tests := []struct {
		name, old, new string
		want           string // in the error
	}{
		{"field typo in an Any", "failure_mode_allow: false", "failure_mode_alow: false", "unknown field"},
		{"field typo in the bootstrap", "static_resources:", "static_resource:", "unknown field"},
		{"field typo in a per-route Any", "context_extensions:", "context_extension:", "unknown field"},
		{"unregistered type", "header_mutation.v3.HeaderMutation", "header_mutation.v3.HeaderMutations", "HeaderMutations"},
		{"bad enum", "transport_api_version: V3", "transport_api_version: V4", "V4"},
		{"bad duration", " timeout: 0.25s", " timeout: 250ms", "Duration"},
		{"validation rule", "port_value: 9191", "port_value: 91910", "PortValue"},
		{"validation rule in an Any", "stat_prefix: ingress_http", "stat_prefix: \"\"", "StatPrefix"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, 1, strings.Count(src, tc.old), "%q must occur once in envoy.yaml", tc.old)
			_, err := loadBootstrap([]byte(strings.Replace(src, tc.old, tc.new, 1)))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
