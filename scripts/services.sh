#!/usr/bin/env bash
# services.sh finds PostgreSQL and Redis for neoauthz, starting local ones when needed.
#
# It prints shell `export` lines on stdout (use: eval "$(scripts/services.sh)") and
# explains what it uses on stderr. Order of preference for each service:
#   1. DATABASE_URL / REDIS_URL from the environment, as given;
#   2. a server already answering at the default address (127.0.0.1:5432, 127.0.0.1:6379);
#   3. a server of our own under .data/ (PostgreSQL on port 55432, Redis on 56379),
#      installing the Debian packages first when they are missing and we are root.
# The tests that kill and restart Redis, and the Redis Cluster and Sentinel failover tests, run
# redis-server, redis-cli and redis-sentinel of their own, so those binaries are installed (as
# root) even when a Redis server is found elsewhere. The tests of the pdp's load path through
# PgBouncer (transaction pooling mode) start a pgbouncer of their own, so it is installed too;
# likewise the PostgreSQL read-replica tests start a primary and a streaming replica of their own
# (initdb, postgres, pg_basebackup).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
data="$root/.data"
pg_port=${NEOAUTHZ_LOCAL_PG_PORT:-55432}
redis_port=${NEOAUTHZ_LOCAL_REDIS_PORT:-56379}

say() { printf 'services: %s\n' "$*" >&2; }

need_pkg() { # need_pkg COMMAND PACKAGE...
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ]; then
    say "$1 is missing; install ${*:2} or set the service URL"; exit 1
  fi
  say "installing ${*:2} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq "${@:2}" >&2
}

want_pkg() { # want_pkg COMMAND PACKAGE: a binary the tests start themselves; root installs it
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ]; then
    say "$1 is missing: the tests that start it will fail; install the $2 package"
    return 0
  fi
  need_pkg "$@"
}

pg_bin() { # the directory of the newest installed PostgreSQL server binaries
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && [ -x "$d/initdb" ] && { echo "$d"; return; }
  dirname "$(command -v initdb)"
}

postgres_url() {
  if [ -n "${DATABASE_URL:-}" ]; then say "PostgreSQL: DATABASE_URL from the environment"; echo "$DATABASE_URL"; return; fi
  local def="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
  if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432 -t 2 &&
     psql "$def" -Atqc 'select 1' >/dev/null 2>&1; then
    say "PostgreSQL: using the server at 127.0.0.1:5432"; echo "$def"; return
  fi
  need_pkg pg_ctlcluster postgresql postgresql-contrib
  local bin; bin=$(pg_bin)
  local dir="$data/postgres" run=()
  mkdir -p "$data"
  if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root: run it as postgres, in a folder postgres can reach
    # (a checkout under /root is not).
    run=(env -C / runuser -u postgres --)
    if ! runuser -u postgres -- test -x "$data" 2>/dev/null; then
      dir="/var/lib/postgresql/neoauthz-$(printf '%s' "$root" | md5sum | cut -c1-8)"
      mkdir -p "$(dirname "$dir")"
    else
      chown postgres "$data"
    fi
    mkdir -p "$dir" && chown postgres "$dir" && chmod 700 "$dir"
  fi
  if [ ! -s "$dir/PG_VERSION" ]; then
    say "PostgreSQL: initdb into $dir"
    "${run[@]}" "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if ! "${run[@]}" "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    say "PostgreSQL: starting our own on 127.0.0.1:$pg_port"
    "${run[@]}" "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-p $pg_port -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c shared_buffers=256MB" start >/dev/null
  fi
  say "PostgreSQL: using our own at 127.0.0.1:$pg_port (data in $dir)"
  echo "postgres://postgres@127.0.0.1:$pg_port/postgres?sslmode=disable"
}

redis_url() {
  if [ -n "${REDIS_URL:-}" ]; then say "Redis: REDIS_URL from the environment"; echo "$REDIS_URL"; return; fi
  if command -v redis-cli >/dev/null 2>&1 && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; then
    say "Redis: using the server at 127.0.0.1:6379"; echo "redis://127.0.0.1:6379/0"; return
  fi
  need_pkg redis-server redis-server
  mkdir -p "$data/redis"
  if [ "$(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" != PONG ]; then
    say "Redis: starting our own on 127.0.0.1:$redis_port"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
      --dir "$data/redis" --logfile "$data/redis/redis.log" --pidfile "$data/redis/redis.pid" >&2
    for _ in $(seq 50); do [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
  fi
  say "Redis: using our own at 127.0.0.1:$redis_port"
  echo "redis://127.0.0.1:$redis_port/0"
}

# The Redis failure, Cluster and Sentinel tests start servers and sentinels of their own.
want_pkg redis-server redis-server
want_pkg redis-cli redis-tools
want_pkg redis-sentinel redis-sentinel
# Debian installs it in /usr/sbin, which is not on every user's PATH.
[ -x /usr/sbin/pgbouncer ] || want_pkg pgbouncer pgbouncer
# The replica tests: Debian keeps the server binaries out of PATH.
ls /usr/lib/postgresql/*/bin/pg_basebackup >/dev/null 2>&1 || want_pkg initdb postgresql
db=$(postgres_url)
rd=$(redis_url)
printf 'export DATABASE_URL=%q\nexport REDIS_URL=%q\n' "$db" "$rd"
