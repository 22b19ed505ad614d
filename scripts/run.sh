#!/usr/bin/env bash
# run.sh — neoauthz end to end on local defaults (called by `make run` after
# scripts/services.sh has exported DATABASE_URL and REDIS_URL):
#   admin database + two regional databases, migrations, regions, two demo tenants with
#   users, teams and roles, the development token issuer, the admin API, the pdp in the
#   foreground, and nginx (deploy/nginx.conf) in front of a demo application (demoapp).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
data="$root/.data/run"
mkdir -p "$data"

: "${DATABASE_URL:?run through make run (scripts/services.sh sets DATABASE_URL)}"
IDP_ADDR=${NEOAUTHZ_DEV_IDP_ADDR:-127.0.0.1:8180}
GRPC_ADDR=${NEOAUTHZ_GRPC_ADDR:-127.0.0.1:9191}
HTTP_ADDR=${NEOAUTHZ_HTTP_ADDR:-127.0.0.1:8181}
APP_ADDR=${NEOAUTHZ_DEMO_APP_ADDR:-127.0.0.1:8080}
PROXY_ADDR=${NEOAUTHZ_DEMO_PROXY_ADDR:-127.0.0.1:8088}

say() { printf '\033[1mrun:\033[0m %s\n' "$*" >&2; }

# curl waits for the servers and fetches demo tokens; psql comes with scripts/services.sh.
if ! command -v curl >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "run: curl is missing; install it" >&2; exit 1; }
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >&2
fi

# URLs of other databases on the same server.
base=${DATABASE_URL%%\?*}
query=${DATABASE_URL#"$base"}
server=${base%/*}
db_url() { echo "$server/$1$query"; }
export ADMIN_DATABASE_URL=${ADMIN_DATABASE_URL:-$(db_url neoauthz_admin)}

for db in neoauthz_admin neoauthz_us neoauthz_eu; do
  psql "$DATABASE_URL" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 ||
    psql "$DATABASE_URL" -qc "CREATE DATABASE $db" >/dev/null
done

# A key for registered database passwords, kept with the local data.
[ -s "$data/secret.key" ] || head -c 32 /dev/urandom | base64 > "$data/secret.key"
export NEOAUTHZ_SECRET_KEY=$(cat "$data/secret.key")
# The development issuer's Keycloak-style service account, through which the admin API creates
# tenants' realms (create_keycloak_realm).
[ -s "$data/keycloak.secret" ] || head -c 24 /dev/urandom | base64 > "$data/keycloak.secret"

host=$(psql "$DATABASE_URL" -Atc 'SELECT host(inet_server_addr())')
port=$(psql "$DATABASE_URL" -Atc 'SELECT inet_server_port()')
user=$(psql "$DATABASE_URL" -Atc 'SELECT current_user')
pw_args=()
if [[ $base =~ ://[^:@/]+:([^@]+)@ ]]; then
  export NEOAUTHZ_DEV_DB_PASSWORD=${BASH_REMATCH[1]}
  pw_args=(--password-env NEOAUTHZ_DEV_DB_PASSWORD)
fi

admin=bin/admin
quiet() { "$@" >/dev/null 2>"$data/last.err" || { grep -q 'already exists' "$data/last.err" || { cat "$data/last.err" >&2; return 1; }; }; }

say "migrating the admin database"
$admin migrate apply --scope admin >/dev/null
say "regions and regional databases"
quiet $admin region create --code us-east-1 --name "US East"
quiet $admin region create --code eu-west-1 --name "EU West" --data-residency
quiet $admin db register --name us-primary --region us-east-1 --host "${host:-127.0.0.1}" --port "$port" --database neoauthz_us --user "$user" --tls-mode disable "${pw_args[@]}"
quiet $admin db register --name eu-primary --region eu-west-1 --host "${host:-127.0.0.1}" --port "$port" --database neoauthz_eu --user "$user" --tls-mode disable "${pw_args[@]}"
$admin db check >/dev/null
$admin migrate apply --scope all >/dev/null    # regional databases and existing tenants
say "demo tenants: acme (us-east-1, schema) and globex (eu-west-1, its own database)"
quiet $admin tenant create --slug acme --name "Acme Corp" --region us-east-1 --realm acme
quiet $admin tenant create --slug globex --name "Globex" --region eu-west-1 --realm globex --deployment database

psql -q "$(db_url neoauthz_us)" <<'SQL'
INSERT INTO t_acme.users (external_id, email) VALUES ('alice', 'alice@acme.test'), ('bob', 'bob@acme.test'), ('carol', 'carol@acme.test')
  ON CONFLICT DO NOTHING;
INSERT INTO t_acme.teams (slug, name) VALUES ('eng', 'Engineering') ON CONFLICT DO NOTHING;
INSERT INTO t_acme.teams (slug, name, parent_team_id) SELECT 'eng-platform', 'Platform', id FROM t_acme.teams WHERE slug = 'eng' ON CONFLICT DO NOTHING;
INSERT INTO t_acme.team_members (team_id, user_id) SELECT t.id, u.id FROM t_acme.teams t, t_acme.users u
  WHERE t.slug = 'eng' AND u.external_id IN ('bob', 'carol') ON CONFLICT DO NOTHING;
INSERT INTO t_acme.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_acme.users u JOIN t_acme.roles r
  ON (u.external_id, r.code) IN (('alice', 'admin'), ('bob', 'member'), ('carol', 'viewer')) ON CONFLICT DO NOTHING;
SQL
psql -q "$server/tenant_globex$query" <<'SQL'
INSERT INTO t_globex.users (external_id) VALUES ('dave') ON CONFLICT DO NOTHING;
INSERT INTO t_globex.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_globex.users u, t_globex.roles r
  WHERE u.external_id = 'dave' AND r.code = 'owner' ON CONFLICT DO NOTHING;
SQL
$admin bootstrap --user root >/dev/null


pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

say "development token issuer (DEVELOPMENT ONLY) at http://$IDP_ADDR"
# Any realm a tenant names is served (tenants created later included); keys stay in .data.
bin/devidp --addr "$IDP_ADDR" --realms platform,acme,globex --audience neoauthz --keys "$data/devidp" \
  --admin-client neoauthz-admin --admin-secret-file "$data/keycloak.secret" 2>"$data/devidp.log" &
pids+=($!)
for _ in $(seq 50); do curl -fs "http://$IDP_ADDR/realms/acme/.well-known/openid-configuration" >/dev/null && break; sleep 0.1; done

export NEOAUTHZ_TRUSTED_ISSUERS=${NEOAUTHZ_TRUSTED_ISSUERS:-http://$IDP_ADDR}
export NEOAUTHZ_AUDIENCES=${NEOAUTHZ_AUDIENCES:-neoauthz}
export NEOAUTHZ_ROUTES=${NEOAUTHZ_ROUTES:-$root/deploy/routes.json}
# Forward auth reads the headers deploy/nginx.conf sets.
export NEOAUTHZ_FORWARD_AUTH_HEADERS=${NEOAUTHZ_FORWARD_AUTH_HEADERS:-nginx}
export NEOAUTHZ_GRPC_ADDR=$GRPC_ADDR NEOAUTHZ_HTTP_ADDR=$HTTP_ADDR
bin/pdp 2>"$data/pdp.log" &
pdp=$!
pids+=($pdp)
for _ in $(seq 100); do curl -fs "http://$HTTP_ADDR/health" >/dev/null && break; sleep 0.1; done
curl -fs "http://$HTTP_ADDR/health" >/dev/null || { echo "the pdp did not become healthy; see $data/pdp.log" >&2; tail -20 "$data/pdp.log" >&2; exit 1; }

ADMIN_ADDR=${NEOAUTHZ_ADMIN_ADDR:-127.0.0.1:8001}
NEOAUTHZ_ADMIN_ADDR=$ADMIN_ADDR NEOAUTHZ_PLATFORM_REALM=platform \
  NEOAUTHZ_KEYCLOAK_URL=${NEOAUTHZ_KEYCLOAK_URL:-http://$IDP_ADDR} NEOAUTHZ_KEYCLOAK_CLIENT_ID=${NEOAUTHZ_KEYCLOAK_CLIENT_ID:-neoauthz-admin} \
  NEOAUTHZ_KEYCLOAK_CLIENT_SECRET_FILE=${NEOAUTHZ_KEYCLOAK_CLIENT_SECRET_FILE:-$data/keycloak.secret} \
  NEOAUTHZ_KEYCLOAK_DISABLE_ON_SUSPEND=${NEOAUTHZ_KEYCLOAK_DISABLE_ON_SUSPEND:-true} \
  bin/admin serve 2>"$data/admin.log" &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://$ADMIN_ADDR/health" >/dev/null && break; sleep 0.1; done

# The demo application and nginx in front of it with the shipped configuration (addresses
# adapted when overridden; temporary files under .data so that no root is needed).
bin/demoapp --addr "$APP_ADDR" 2>"$data/demoapp.log" &
pids+=($!)
proxy=""
scripts/proxies.sh nginx || true
nginx_bin=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null || true)
if [ -n "$nginx_bin" ]; then
  mkdir -p "$data/nginx"
  sed -e "s/server 127.0.0.1:8181;/server $HTTP_ADDR;/" -e "s/server 127.0.0.1:8080;/server $APP_ADDR;/" \
      -e "s/listen 127.0.0.1:8088;/listen $PROXY_ADDR;/" \
      -e "s|^http {|http {\n    client_body_temp_path $data/nginx/body; proxy_temp_path $data/nginx/proxy; fastcgi_temp_path $data/nginx/fastcgi; uwsgi_temp_path $data/nginx/uwsgi; scgi_temp_path $data/nginx/scgi;|" \
      deploy/nginx.conf > "$data/nginx/nginx.conf"
  "$nginx_bin" -e stderr -p "$data/nginx" -c "$data/nginx/nginx.conf" -g "daemon off; pid $data/nginx/nginx.pid;" 2>>"$data/nginx.log" &
  pids+=($!)
  for _ in $(seq 50); do curl -fs "http://$PROXY_ADDR/healthz" >/dev/null && { proxy=$PROXY_ADDR; break; }; sleep 0.1; done
  [ -n "$proxy" ] || say "nginx did not start; see $data/nginx.log"
else
  say "nginx is not installed (as root, make run installs it): no proxy in front of the demo application"
fi

eng=$(psql "$(db_url neoauthz_us)" -Atc "SELECT id FROM t_acme.teams WHERE slug = 'eng'")
if [ -n "$proxy" ]; then
  proxy_text=$(cat <<TXT
curl -s -H "Authorization: Bearer \$ALICE" http://$proxy/api/reports        # 200: the echo shows x-neoauthz-tenant: acme, x-neoauthz-user: alice
curl -si -H "Authorization: Bearer \$BOB" http://$proxy/api/reports         # 403
curl -si http://$proxy/api/reports                                        # 401 with WWW-Authenticate
curl -s -H 'X-Neoauthz-User: root' http://$proxy/healthz                  # 200, public: the echo shows no x-neoauthz-* header
curl -s -H "Authorization: Bearer \$BOB" -H 'X-Original-URI: /healthz' http://$proxy/api/reports   # still 403: nginx overwrites the header
TXT
)
  erin_text="curl -s -H \"Authorization: Bearer \$ERIN\" http://$proxy/api/reports   # 200: x-neoauthz-tenant: initech, x-neoauthz-user: erin"
else
  proxy_text="# (no nginx: install it, or run make run as root, to see requests through a proxy)"
  erin_text="curl -i -H \"Authorization: Bearer \$ERIN\" -H 'X-Original-Method: GET' -H 'X-Original-URI: /api/reports' http://$HTTP_ADDR/auth   # 200"
fi
cat <<TXT

neoauthz is running:  pdp gRPC $GRPC_ADDR · HTTP http://$HTTP_ADDR · admin API http://$ADMIN_ADDR (docs: /docs) · dev issuer http://$IDP_ADDR
${proxy:+nginx http://$proxy (deploy/nginx.conf) → }demo application http://$APP_ADDR
logs: $data/pdp.log $data/admin.log $data/nginx.log   routes: $NEOAUTHZ_ROUTES   Ctrl-C stops everything.

# tokens from the development issuer (alice: acme admin, bob: acme member of team eng)
ALICE=\$(curl -s 'http://$IDP_ADDR/dev/token?realm=acme&sub=alice' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
BOB=\$(curl -s 'http://$IDP_ADDR/dev/token?realm=acme&sub=bob' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')

# through nginx (deploy/nginx.conf) to the demo application, which echoes the identity headers it received
$proxy_text
# forward auth directly (the pdp runs with NEOAUTHZ_FORWARD_AUTH_HEADERS=$NEOAUTHZ_FORWARD_AUTH_HEADERS: it reads nginx's X-Original-* headers only)
curl -i -H "Authorization: Bearer \$ALICE" -H 'X-Original-Method: GET' -H 'X-Original-URI: /api/reports' http://$HTTP_ADDR/auth   # 200 allow
curl -i -H "Authorization: Bearer \$BOB"   -H 'X-Original-Method: GET' -H 'X-Original-URI: /api/reports' http://$HTTP_ADDR/auth   # 403 deny
curl -i -H 'X-Original-Method: GET' -H 'X-Original-URI: /api/reports' http://$HTTP_ADDR/auth                                  # 401
curl -i -H "Authorization: Bearer \$BOB"   -H 'X-Original-Method: GET' -H 'X-Original-URI: /api/teams/$eng/projects' http://$HTTP_ADDR/auth  # 200 (team scope)
curl -i -H "Authorization: Bearer \$ALICE" -H 'X-Original-Method: GET' -H 'X-Original-URI: /api/reports' -H 'X-Forwarded-Uri: /healthz' http://$HTTP_ADDR/auth  # 400: another convention's header disagrees

# gRPC (grpcurl: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest)
grpcurl -plaintext -d "{\"subject\":{\"token\":\"\$ALICE\"},\"permission\":\"users.delete.tenant\"}" $GRPC_ADDR neoauthz.v1.AuthorizationService/Check   # allowed
grpcurl -plaintext -d "{\"subject\":{\"token\":\"\$BOB\"},\"permission\":\"users.delete.tenant\"}" $GRPC_ADDR neoauthz.v1.AuthorizationService/Check     # denied: no_permission
grpcurl -plaintext -d "{\"attributes\":{\"request\":{\"http\":{\"method\":\"GET\",\"path\":\"/api/reports\",\"headers\":{\"authorization\":\"Bearer \$ALICE\"}}}}}" $GRPC_ADDR envoy.service.auth.v3.Authorization/Check  # OK
grpcurl -plaintext -d '{"attributes":{"request":{"http":{"method":"GET","path":"/api/reports"}}}}' $GRPC_ADDR envoy.service.auth.v3.Authorization/Check  # 401

# the admin API with a platform token (root is a system_admin); every write returns a consistency token
# (X-Neoauthz-Consistency): send it as x-neoauthz-consistency on a check to read that write or newer
ROOT=\$(curl -s 'http://$IDP_ADDR/dev/token?realm=platform&sub=root' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
curl -s -H "Authorization: Bearer \$ROOT" http://$ADMIN_ADDR/api/v1/admin/tenants
curl -s -H "Authorization: Bearer \$ROOT" -X POST http://$ADMIN_ADDR/api/v1/admin/tenants/acme/suspend    # acme is suspended: alice's requests are refused from now on, and the error's details say why
curl -s -H "Authorization: Bearer \$ROOT" -X POST http://$ADMIN_ADDR/api/v1/admin/tenants/acme/activate   # undoes it: alice is allowed again

# a new tenant, with a realm of its own, gets development tokens and decisions at once (no restart)
curl -s -H "Authorization: Bearer \$ROOT" -X POST http://$ADMIN_ADDR/api/v1/admin/tenants -d '{"slug":"initech","region":"us-east-1","external_auth_realm":"initech-sso"}'
curl -s -H "Authorization: Bearer \$ROOT" -X POST http://$ADMIN_ADDR/api/v1/tenants/initech/users -d '{"external_id":"erin"}'
curl -s -H "Authorization: Bearer \$ROOT" -X POST http://$ADMIN_ADDR/api/v1/tenants/initech/users/erin/roles -d '{"role":"admin"}'
ERIN=\$(curl -s 'http://$IDP_ADDR/dev/token?realm=initech-sso&sub=erin' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
$erin_text

# a tenant whose realm the admin creates in the (development) Keycloak, with an owner: the realm's tokens
# (azp app, aud neoauthz: the tenant's settings.clients/audiences) are accepted at once, and uma is its owner
curl -s -H "Authorization: Bearer \$ROOT" -X POST http://$ADMIN_ADDR/api/v1/admin/tenants -d '{"slug":"umbrella","region":"us-east-1","create_keycloak_realm":true,"keycloak_owner":{"username":"uma","email":"uma@umbrella.test"}}'
UMA=\$(curl -s 'http://$IDP_ADDR/dev/token?realm=tenant-umbrella&username=uma' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
curl -i -H "Authorization: Bearer \$UMA" -H 'X-Original-Method: GET' -H 'X-Original-URI: /api/reports' http://$HTTP_ADDR/auth   # 200
curl -s -H "Authorization: Bearer \$ROOT" -X POST http://$ADMIN_ADDR/api/v1/admin/tenants/umbrella/suspend   # also disables the realm: /dev/token for it answers 403
curl -s -H "Authorization: Bearer \$ROOT" -X DELETE 'http://$ADMIN_ADDR/api/v1/admin/tenants/umbrella?purge=true&delete_realm=true'   # data and realm gone

# a revocation takes effect at once (the next check after the NOTIFY denies):
psql '$(db_url neoauthz_us)' -c "DELETE FROM t_acme.user_roles WHERE user_id = (SELECT id FROM t_acme.users WHERE external_id = 'alice')"
TXT
wait "$pdp"
