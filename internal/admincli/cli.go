// Package admincli is the command-line interface of the admin binary: migrations, regions,
// the database registry, tenants, the admin REST API server, bootstrap and audit verification.
package admincli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/user"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/neofast/neoauthz/internal/audit"
	"github.com/neofast/neoauthz/internal/consistency"
	"github.com/neofast/neoauthz/internal/fleet"
	"github.com/neofast/neoauthz/internal/keycloak"
	"github.com/neofast/neoauthz/internal/probe"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/secretbox"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/migrations"
)

// ErrUsage marks a command line that could not be understood (exit code 2).
var ErrUsage = errors.New("usage")

const usage = `admin — the neoauthz control plane

Usage:
  admin migrate apply    [--scope all|admin|regional|tenants|analytics] [--tenant SLUG] [--dry-run]
                         [--batch-size N] [--concurrency N] [--repair] [--output text|json]
  admin migrate status   [--scope ...] [--tenant SLUG] [--detailed] [--output text|json]
  admin migrate rollback --scope ... --to VERSION [--tenant SLUG] [--output text|json]
  admin region create    --code CODE [--name NAME] [--data-residency]
  admin region list
  admin db register      --name NAME --region CODE --host HOST [--port 5432] --database DB --user USER
                         [--password-env VAR] [--type primary|replica|analytics|backup]
                         [--primary NAME] (a replica: the primary it streams from)
                         [--tls-mode prefer] [--max-failures 3]
  admin db list
  admin db check         [NAME]
  admin tenant create    --slug SLUG --realm REALM --region CODE [--name NAME] [--deployment schema|database]
                         [--create-realm [--owner-username U [--owner-email E]]] [--output text|json]
                         --create-realm creates the Keycloak realm (--realm may then be omitted:
                         NEOAUTHZ_KEYCLOAK_REALM_PATTERN names it); rerun the same command to finish
                         a provisioning that failed
  admin tenant list      [--status S] [--region CODE]
  admin tenant suspend|activate SLUG [--output text|json]
  admin tenant delete    SLUG [--purge [--delete-realm]]   --delete-realm: also the realm neoauthz created
  admin tenant regions   SLUG [--output text|json]   regions and databases holding the tenant's data
  admin serve            [--addr :8001] --trusted-issuers URL[,URL] --platform-realm REALM
                         --audiences A[,B] | --allow-any-audience   [--clients C[,D]]
                         [--health-interval 30s] [--health-timeout 5s]
                         [--decision-retention 720h] [--decision-prune-interval 1h] [--pprof]
  admin bootstrap        --user SUB [--email EMAIL]   make SUB (a platform token's sub) a system_admin
  admin audit verify     [--expect-head CHECKPOINT]    walk the audit log's hash chain (up to its head)
  admin audit checkpoint                               print the chain's head, MAC'd with NEOAUTHZ_AUDIT_KEY
  admin probe            [URL]   exit 0 when URL (default http://127.0.0.1:8001/health) answers 200
  admin decisions query  --tenant SLUG [--user SUB] [--permission CODE] [--allowed true|false]
                         [--from RFC3339] [--to RFC3339] [--page N] [--page-size N] [--output text|json]
  admin decisions prune  [--retention 720h] [--output text|json]
                         create the next days' partitions and drop decisions older than the retention

Environment:
  ADMIN_DATABASE_URL     the admin database (required)
  NEOAUTHZ_SECRET_KEY    base64 of 32 bytes; encrypts registered database passwords
  NEOAUTHZ_AUDIT_KEY     audit checkpoint/verify --expect-head: the operator's MAC key (>= 16 bytes)
  NEOAUTHZ_ADMIN_ADDR    admin serve: listen address (default :8001)
  NEOAUTHZ_TRUSTED_ISSUERS, NEOAUTHZ_PLATFORM_REALM, NEOAUTHZ_AUDIENCES, NEOAUTHZ_CLIENTS,
  NEOAUTHZ_ALLOW_ANY_AUDIENCE, NEOAUTHZ_ADMIN_HEALTH_INTERVAL, NEOAUTHZ_ADMIN_HEALTH_TIMEOUT,
  NEOAUTHZ_PPROF
                         admin serve: defaults for the flags of the same meaning
  NEOAUTHZ_DECISION_RETENTION
                         admin serve and admin decisions prune: how long decisions are kept (720h)
  NEOAUTHZ_KEYCLOAK_URL  Keycloak's base URL: enables realm provisioning (tenant create --create-realm,
                         create_keycloak_realm in the API), with the service account's
  NEOAUTHZ_KEYCLOAK_ADMIN_REALM (master), NEOAUTHZ_KEYCLOAK_CLIENT_ID and
  NEOAUTHZ_KEYCLOAK_CLIENT_SECRET or NEOAUTHZ_KEYCLOAK_CLIENT_SECRET_FILE
  NEOAUTHZ_KEYCLOAK_REALM_PATTERN (tenant-{slug}), NEOAUTHZ_KEYCLOAK_APP_CLIENT_ID (app),
  NEOAUTHZ_KEYCLOAK_AUDIENCE (neoauthz), NEOAUTHZ_KEYCLOAK_REDIRECT_URIS,
  NEOAUTHZ_KEYCLOAK_ACCESS_TOKEN_LIFESPAN (5m), NEOAUTHZ_KEYCLOAK_DISABLE_ON_SUSPEND (false)
                         what created realms look like; see the README
`

// Env is what a command runs with.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// Run executes one command line (without the program name).
func Run(ctx context.Context, args []string, env Env) error {
	// Help never needs configuration: a command line asking for it prints the usage before
	// anything is opened.
	if slices.ContainsFunc(args, isHelpFlag) {
		fmt.Fprint(env.Stdout, usageFor(args))
		return nil
	}
	// One-word commands.
	if len(args) >= 1 && args[0] == "probe" {
		url := "http://127.0.0.1:8001/health"
		if len(args) > 1 {
			url = args[1]
		}
		return probe.Check(ctx, url, 3*time.Second)
	}
	if len(args) >= 1 && (args[0] == "serve" || args[0] == "bootstrap") {
		a, err := open(ctx, env)
		if err != nil {
			return err
		}
		defer a.close()
		ctx = audit.WithActor(ctx, a.actor(), "")
		if args[0] == "serve" {
			return a.serve(ctx, args[1:])
		}
		return a.bootstrap(ctx, args[1:])
	}
	if len(args) < 2 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(env.Stdout, usage)
		if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			return nil
		}
		return ErrUsage
	}
	a, err := open(ctx, env)
	if err != nil {
		return err
	}
	defer a.close()
	// Every write of the command is audited as the operating-system user running it.
	ctx = audit.WithActor(ctx, a.actor(), "")
	switch args[0] + " " + args[1] {
	case "migrate apply":
		return a.migrateApply(ctx, args[2:], false)
	case "migrate rollback":
		return a.migrateApply(ctx, args[2:], true)
	case "migrate status":
		return a.migrateStatus(ctx, args[2:])
	case "region create":
		return a.regionCreate(ctx, args[2:])
	case "region list":
		return a.regionList(ctx)
	case "db register":
		return a.dbRegister(ctx, args[2:])
	case "db list":
		return a.dbList(ctx)
	case "db check":
		return a.dbCheck(ctx, args[2:])
	case "tenant create":
		return a.tenantCreate(ctx, args[2:])
	case "tenant list":
		return a.tenantList(ctx, args[2:])
	case "tenant suspend", "tenant activate":
		return a.tenantTransition(ctx, args[1], args[2:])
	case "tenant delete":
		return a.tenantDelete(ctx, args[2:])
	case "tenant regions":
		return a.tenantRegions(ctx, args[2:])
	case "audit verify":
		return a.auditVerify(ctx, args[2:])
	case "audit checkpoint":
		return a.auditCheckpoint(ctx)
	case "decisions query":
		return a.decisionsQuery(ctx, args[2:])
	case "decisions prune":
		return a.decisionsPrune(ctx, args[2:])
	}
	fmt.Fprint(env.Stderr, usage)
	return fmt.Errorf("unknown command %q: %w", strings.Join(args[:2], " "), ErrUsage)
}

type app struct {
	env     Env
	pool    *pgxpool.Pool
	reg     *registry.Store
	fleet   *fleet.Runner
	tenants *tenancy.Service
}

func open(ctx context.Context, env Env) (*app, error) {
	url := env.Getenv("ADMIN_DATABASE_URL")
	if url == "" {
		return nil, errors.New("ADMIN_DATABASE_URL is not set: point it at the admin database, e.g. postgres://postgres@127.0.0.1:5432/neoauthz_admin")
	}
	box, err := secretbox.New(env.Getenv(secretbox.EnvKey))
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("admin database: %w", err)
	}
	sets, err := fleet.LoadSets(migrations.FS)
	if err != nil {
		pool.Close()
		return nil, err
	}
	realms, err := realmProvisioner(env.Getenv)
	if err != nil {
		pool.Close()
		return nil, err
	}
	reg := registry.New(pool, box)
	runner := &fleet.Runner{Admin: pool, AdminURL: url, Registry: reg, Sets: sets,
		Log: slog.New(slog.NewJSONHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	return &app{env: env, pool: pool, reg: reg, fleet: runner,
		tenants: &tenancy.Service{Admin: pool, Registry: reg, Fleet: runner, PlatformRealm: env.Getenv("NEOAUTHZ_PLATFORM_REALM"), Realms: realms}}, nil
}

// realmProvisioner is the Keycloak realm provisioning the environment configures; nil when
// NEOAUTHZ_KEYCLOAK_URL is unset.
func realmProvisioner(getenv func(string) string) (*keycloak.Provisioner, error) {
	cfg, ok, err := keycloak.ConfigFromEnv(getenv)
	if !ok {
		return nil, nil
	}
	settings, perr := keycloak.ProvisioningFromEnv(getenv)
	if err = errors.Join(err, perr); err != nil {
		return nil, fmt.Errorf("keycloak settings: %w", err)
	}
	client, err := keycloak.New(cfg, nil)
	if err != nil {
		return nil, fmt.Errorf("keycloak settings: %w", err)
	}
	return &keycloak.Provisioner{Client: client, Settings: settings}, nil
}

func (a *app) close() { a.pool.Close() }

// actor is the audit actor of the CLI's writes: cli:<operating-system user>.
func (a *app) actor() string {
	name := a.env.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		name = "unknown"
	}
	return "cli:" + name
}

// write runs fn on the registry inside a transaction that appends fn's audit record, so the
// change and its audit row commit together.
func (a *app) write(ctx context.Context, fn func(reg *registry.Store) (audit.Record, error)) error {
	return pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		rec, err := fn(a.reg.In(tx))
		if err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx, audit.Attributed(ctx, rec))
		return err
	})
}

func isHelpFlag(s string) bool { return s == "-h" || s == "--help" || s == "-help" || s == "help" }

// usageFor returns the usage lines of the command args names (all of them when it names none).
func usageFor(args []string) string {
	var words []string
	for _, a := range args {
		if isHelpFlag(a) || strings.HasPrefix(a, "-") {
			break
		}
		words = append(words, a)
	}
	if len(words) == 0 {
		return usage
	}
	prefix := "  admin " + strings.Join(words, " ")
	var out strings.Builder
	in := false
	for _, line := range strings.Split(usage, "\n") {
		switch {
		case strings.HasPrefix(line, prefix):
			in = true
		case strings.HasPrefix(line, "  admin ") || !strings.HasPrefix(line, "   "):
			in = false
		}
		if in {
			out.WriteString(line + "\n")
		}
	}
	if out.Len() == 0 {
		return usage
	}
	return "Usage:\n" + out.String()
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s: %w: %w", fs.Name(), err, ErrUsage)
	}
	return nil
}

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *app) table(header string, rows [][]string) {
	w := tabwriter.NewWriter(a.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	_ = w.Flush()
}

func (a *app) migrateApply(ctx context.Context, args []string, rollback bool) error {
	fs := newFlags("migrate")
	var plan fleet.Plan
	var output string
	fs.StringVar(&plan.Scope, "scope", fleet.ScopeAll, "")
	fs.StringVar(&plan.Tenant, "tenant", "", "")
	fs.BoolVar(&plan.DryRun, "dry-run", false, "")
	fs.BoolVar(&plan.Repair, "repair", false, "")
	fs.IntVar(&plan.BatchSize, "batch-size", 100, "")
	fs.IntVar(&plan.Concurrency, "concurrency", 4, "")
	fs.StringVar(&plan.To, "to", "", "")
	fs.StringVar(&output, "output", "text", "")
	if err := parse(fs, args); err != nil {
		return err
	}
	if plan.Tenant != "" && plan.Scope == fleet.ScopeAll {
		plan.Scope = fleet.ScopeTenants
	}
	plan.RequestedBy = "cli:" + a.env.Getenv("USER")
	start := time.Now()
	last := time.Time{}
	plan.Progress = func(done, total int) {
		if output == "text" && total > 20 && (time.Since(last) > time.Second || done == total) {
			last = time.Now()
			fmt.Fprintf(a.env.Stderr, "  %d/%d targets (%.0fs)\n", done, total, time.Since(start).Seconds())
		}
	}
	var run fleet.Run
	var err error
	if rollback {
		run, err = a.fleet.Rollback(ctx, plan)
	} else {
		run, err = a.fleet.Apply(ctx, plan)
	}
	if output == "json" {
		if perr := a.printJSON(run); perr != nil {
			return perr
		}
		return err
	}
	rows := [][]string{}
	for _, r := range run.Results {
		what := strings.Join(r.Applied, ", ")
		if plan.DryRun {
			what = "would apply: " + strings.Join(r.Pending, ", ")
			if len(r.Pending) == 0 {
				what = "nothing to apply"
			}
		}
		if r.Error != "" {
			what = r.Error
		}
		rows = append(rows, []string{r.Target, r.Set, r.Schema, r.Status, r.From + " → " + r.To, what})
	}
	a.table("TARGET\tSET\tSCHEMA\tSTATUS\tVERSION\tDETAIL", rows)
	fmt.Fprintf(a.env.Stdout, "run %s: %s — %d targets, %d succeeded, %d failed in %s\n",
		run.ID, run.Status, run.Total, run.Succeeded, run.Failed, time.Since(start).Round(time.Millisecond))
	return err
}

func (a *app) migrateStatus(ctx context.Context, args []string) error {
	fs := newFlags("migrate status")
	var plan fleet.Plan
	var output string
	var detailed bool
	fs.StringVar(&plan.Scope, "scope", fleet.ScopeAll, "")
	fs.StringVar(&plan.Tenant, "tenant", "", "")
	fs.BoolVar(&detailed, "detailed", false, "")
	fs.StringVar(&output, "output", "text", "")
	if err := parse(fs, args); err != nil {
		return err
	}
	if plan.Tenant != "" && plan.Scope == fleet.ScopeAll {
		plan.Scope = fleet.ScopeTenants
	}
	st, err := a.fleet.Status(ctx, plan)
	if err != nil {
		return err
	}
	if output == "json" {
		return a.printJSON(st)
	}
	rows := [][]string{}
	behind, failed := 0, 0
	for _, s := range st {
		state := "up to date"
		switch {
		case s.Error != "":
			state, failed = "error: "+s.Error, failed+1
		case len(s.Failed) > 0 || len(s.Mismatched) > 0:
			state, failed = fmt.Sprintf("failed %v, edited %v", s.Failed, s.Mismatched), failed+1
		case len(s.Pending) > 0:
			state, behind = fmt.Sprintf("%d pending", len(s.Pending)), behind+1
		}
		if detailed && len(s.Pending) > 0 {
			state += " " + strings.Join(s.Pending, ", ")
		}
		if detailed || state != "up to date" || len(st) <= 50 {
			rows = append(rows, []string{s.Target, s.Set, s.Schema, s.Current, s.Latest, state})
		}
	}
	a.table("TARGET\tSET\tSCHEMA\tCURRENT\tLATEST\tSTATE", rows)
	fmt.Fprintf(a.env.Stdout, "%d schemas: %d behind, %d failed\n", len(st), behind, failed)
	if failed > 0 {
		return fmt.Errorf("%d schemas need attention", failed)
	}
	return nil
}

func (a *app) regionCreate(ctx context.Context, args []string) error {
	fs := newFlags("region create")
	var r registry.Region
	fs.StringVar(&r.Code, "code", "", "")
	fs.StringVar(&r.Name, "name", "", "")
	fs.BoolVar(&r.DataResidency, "data-residency", false, "")
	if err := parse(fs, args); err != nil {
		return err
	}
	err := a.write(ctx, func(reg *registry.Store) (audit.Record, error) {
		var err error
		r, err = reg.CreateRegion(ctx, r)
		return audit.Record{Action: "region.create", TargetType: "region", TargetID: r.Code, After: r}, err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.env.Stdout, "region %s created\n", r.Code)
	return nil
}

func (a *app) regionList(ctx context.Context) error {
	list, err := a.reg.ListRegions(ctx)
	if err != nil {
		return err
	}
	rows := [][]string{}
	for _, r := range list {
		rows = append(rows, []string{r.Code, r.Name, fmt.Sprint(r.IsActive), fmt.Sprint(r.DataResidency)})
	}
	a.table("CODE\tNAME\tACTIVE\tDATA RESIDENCY", rows)
	return nil
}

func (a *app) dbRegister(ctx context.Context, args []string) error {
	fs := newFlags("db register")
	var c registry.Connection
	var pwEnv string
	fs.StringVar(&c.Name, "name", "", "")
	fs.StringVar(&c.RegionCode, "region", "", "")
	fs.StringVar(&c.Host, "host", "", "")
	fs.IntVar(&c.Port, "port", 5432, "")
	fs.StringVar(&c.Database, "database", "", "")
	fs.StringVar(&c.Username, "user", "", "")
	fs.StringVar(&pwEnv, "password-env", "", "")
	fs.StringVar(&c.Type, "type", registry.TypePrimary, "")
	fs.StringVar(&c.PrimaryID, "primary", "", "")
	fs.StringVar(&c.TLSMode, "tls-mode", "prefer", "")
	fs.IntVar(&c.MaxConsecutiveFailures, "max-failures", 3, "")
	fs.IntVar(&c.PoolMax, "pool-max", 10, "")
	if err := parse(fs, args); err != nil {
		return err
	}
	if pwEnv != "" {
		// The password comes through the environment, never a flag: flags show in `ps`.
		c.Password = a.env.Getenv(pwEnv)
		if c.Password == "" {
			return fmt.Errorf("--password-env %s: the variable is empty", pwEnv)
		}
	}
	err := a.write(ctx, func(reg *registry.Store) (audit.Record, error) {
		var err error
		c, err = reg.RegisterConnection(ctx, c)
		return audit.Record{Action: "database_connection.register", TargetType: "database_connection", TargetID: c.ID, After: c}, err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.env.Stdout, "database %s registered (%s); run `admin db check %s` before provisioning on it\n", c.Name, c.ID, c.Name)
	return nil
}

func (a *app) dbList(ctx context.Context) error {
	list, err := a.reg.ListConnections(ctx, registry.ConnectionFilter{})
	if err != nil {
		return err
	}
	names := map[string]string{}
	for _, c := range list {
		names[c.ID] = c.Name
	}
	rows := [][]string{}
	for _, c := range list {
		typ := c.Type
		if c.PrimaryID != "" {
			typ += " of " + names[c.PrimaryID]
		}
		checked := "never"
		if c.LastHealthCheck != nil {
			checked = c.LastHealthCheck.Format(time.RFC3339)
		}
		rows = append(rows, []string{c.Name, typ, c.RegionCode, fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database),
			fmt.Sprint(c.IsActive), fmt.Sprint(c.IsHealthy), fmt.Sprint(c.ConsecutiveFailures), checked})
	}
	a.table("NAME\tTYPE\tREGION\tADDRESS\tACTIVE\tHEALTHY\tFAILURES\tLAST CHECK", rows)
	return nil
}

func (a *app) dbCheck(ctx context.Context, args []string) error {
	var list []registry.Connection
	if len(args) > 0 {
		c, err := a.reg.GetConnection(ctx, args[0])
		if err != nil {
			return err
		}
		list = append(list, c)
	} else {
		var err error
		if list, err = a.reg.ListConnections(ctx, registry.ConnectionFilter{ActiveOnly: true}); err != nil {
			return err
		}
	}
	unhealthy := 0
	for _, c := range list {
		checked, deactivated, err := a.reg.Check(ctx, c, 5*time.Second)
		if err != nil {
			return err
		}
		state := fmt.Sprintf("healthy (%.1f ms)", deref(checked.LastLatencyMS))
		if !checked.IsHealthy {
			unhealthy++
			state = fmt.Sprintf("UNHEALTHY (%d in a row): %s", checked.ConsecutiveFailures, deref(checked.LastError))
		}
		if deactivated {
			state += " — deactivated"
		}
		fmt.Fprintf(a.env.Stdout, "%s: %s\n", checked.Name, state)
	}
	if unhealthy > 0 {
		return fmt.Errorf("%d of %d databases unhealthy", unhealthy, len(list))
	}
	return nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func (a *app) tenantCreate(ctx context.Context, args []string) error {
	fs := newFlags("tenant create")
	var req tenancy.CreateRequest
	fs.StringVar(&req.Slug, "slug", "", "")
	fs.StringVar(&req.Name, "name", "", "")
	fs.StringVar(&req.Region, "region", "", "")
	fs.StringVar(&req.Deployment, "deployment", tenancy.DeploySchema, "")
	fs.StringVar(&req.Realm, "realm", "", "")
	fs.StringVar(&req.OrganizationID, "org", "", "")
	fs.BoolVar(&req.CreateRealm, "create-realm", false, "")
	var owner keycloak.Owner
	fs.StringVar(&owner.Username, "owner-username", "", "")
	fs.StringVar(&owner.Email, "owner-email", "", "")
	output := outputFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if owner.Username != "" || owner.Email != "" {
		req.Owner = &owner
	}
	t, err := a.tenants.Create(ctx, req)
	if err != nil {
		return err
	}
	if *output == "json" {
		return a.printWrite(ctx, t)
	}
	where := "schema " + t.SchemaName
	if t.DatabaseName != nil {
		where = "database " + *t.DatabaseName
	}
	created := ""
	if t.RealmManaged {
		created = " (created in Keycloak)"
	}
	fmt.Fprintf(a.env.Stdout, "tenant %s (%s) is %s in %s, %s, realm %s%s\n", t.Slug, t.ID, t.Status, t.Region, where, t.Realm, created)
	return nil
}

func (a *app) tenantList(ctx context.Context, args []string) error {
	fs := newFlags("tenant list")
	var f tenancy.Filter
	fs.StringVar(&f.Status, "status", "", "")
	fs.StringVar(&f.Region, "region", "", "")
	if err := parse(fs, args); err != nil {
		return err
	}
	rows := [][]string{}
	for page := 1; ; page++ {
		f.Page = page
		list, total, err := a.tenants.List(ctx, f)
		if err != nil {
			return err
		}
		for _, t := range list {
			rows = append(rows, []string{t.Slug, t.Name, t.Status, t.Deployment, t.Region, t.SchemaName, t.Realm})
		}
		if len(rows) >= total || len(list) == 0 {
			break
		}
	}
	a.table("SLUG\tNAME\tSTATUS\tDEPLOYMENT\tREGION\tSCHEMA\tREALM", rows)
	return nil
}

func (a *app) tenantTransition(ctx context.Context, verb string, args []string) error {
	fs := newFlags("tenant " + verb)
	output := outputFlag(fs)
	slug, err := parseSlug(fs, args)
	if err != nil {
		return err
	}
	var t tenancy.Tenant
	if verb == "suspend" {
		t, err = a.tenants.Suspend(ctx, slug)
	} else {
		t, err = a.tenants.Activate(ctx, slug)
	}
	if err != nil {
		return err
	}
	if *output == "json" {
		return a.printWrite(ctx, t)
	}
	fmt.Fprintf(a.env.Stdout, "tenant %s is %s\n", t.Slug, t.Status)
	return nil
}

// tenantRegions prints where a tenant's data lives (tenancy.Residency): what a pdp must serve
// (-regions) to decide for it.
func (a *app) tenantRegions(ctx context.Context, args []string) error {
	fs := newFlags("tenant regions")
	output := outputFlag(fs)
	slug, err := parseSlug(fs, args)
	if err != nil {
		return err
	}
	r, err := a.tenants.Residency(ctx, slug)
	if err != nil {
		return err
	}
	if *output == "json" {
		return a.printJSON(r)
	}
	fmt.Fprintf(a.env.Stdout, "tenant %s (region %s): data in %s\n", r.Slug, r.Region, strings.Join(r.Regions, ", "))
	rows := make([][]string, 0, len(r.Databases))
	for _, d := range r.Databases {
		rows = append(rows, []string{d.Region, d.Connection, d.Type, d.Database, d.Schema, d.Holds})
	}
	a.table("REGION\tCONNECTION\tTYPE\tDATABASE\tSCHEMA\tHOLDS", rows)
	return nil
}

// parseSlug parses the flags of a command that takes exactly one tenant slug, before them.
func parseSlug(fs *flag.FlagSet, args []string) (string, error) {
	var slug string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		slug, args = args[0], args[1:]
	}
	if err := parse(fs, args); err != nil {
		return "", err
	}
	if slug == "" || fs.NArg() != 0 {
		return "", fmt.Errorf("%s takes one tenant slug: %w", fs.Name(), ErrUsage)
	}
	return slug, nil
}

func outputFlag(fs *flag.FlagSet) *string { return fs.String("output", "text", "") }

// printWrite prints a write's result with a consistency token covering it, for a client to
// send to the pdp (read-your-writes). The admin version is read after the write committed,
// so it covers the write (and perhaps later ones, which exist too).
func (a *app) printWrite(ctx context.Context, data any) error {
	var v int64
	if err := a.pool.QueryRow(ctx, `SELECT version FROM admin.authz_state`).Scan(&v); err != nil {
		return fmt.Errorf("read the admin version: %w", err)
	}
	return a.printJSON(map[string]any{"data": data, "version": v,
		"consistency_token": consistency.ForAdmin(uint64(v)).String()})
}

func (a *app) tenantDelete(ctx context.Context, args []string) error {
	fs := newFlags("tenant delete")
	var opts tenancy.DeleteOptions
	fs.BoolVar(&opts.Purge, "purge", false, "")
	fs.BoolVar(&opts.DeleteRealm, "delete-realm", false, "")
	// Accept the slug before or after the flags.
	var slug string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		slug, args = args[0], args[1:]
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if slug == "" && fs.NArg() == 1 {
		slug = fs.Arg(0)
	}
	if slug == "" {
		return fmt.Errorf("tenant delete takes one tenant slug: %w", ErrUsage)
	}
	if opts.DeleteRealm && !opts.Purge {
		return fmt.Errorf("tenant delete: --delete-realm needs --purge: %w", ErrUsage)
	}
	t, err := a.tenants.Delete(ctx, slug, opts)
	if err != nil {
		return err
	}
	switch {
	case opts.DeleteRealm:
		fmt.Fprintf(a.env.Stdout, "tenant %s purged: its data is dropped and its realm %s deleted\n", t.Slug, t.Realm)
	case opts.Purge:
		fmt.Fprintf(a.env.Stdout, "tenant %s purged: its data is dropped\n", t.Slug)
	default:
		fmt.Fprintf(a.env.Stdout, "tenant %s is deleted (data kept; --purge drops it)\n", t.Slug)
	}
	return nil
}
