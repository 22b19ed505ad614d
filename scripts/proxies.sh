#!/usr/bin/env bash
# proxies.sh makes sure the reverse proxies of the deploy/ tests are installed: nginx and Caddy
# (Debian packages), or those named as arguments (`scripts/proxies.sh nginx`). Called by
# `make test` and `make run`.
#
# Missing ones are installed with apt-get when we are root; otherwise it says what is missing
# (the deploy/ tests then fail under CI and are skipped elsewhere). The packages' own system
# services are not started: the tests and `make run` run their proxies on loopback ports with
# the shipped configurations, and the packaged services would only hold port 80.
set -euo pipefail

say() { printf 'proxies: %s\n' "$*" >&2; }

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(nginx caddy)

missing=()
for p in "${want[@]}"; do
  case $p in
    nginx) command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx) ;;
    caddy) command -v caddy >/dev/null 2>&1 || [ -x /usr/bin/caddy ] || missing+=(caddy) ;;
    *) say "unknown proxy $p"; exit 2 ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  say "${missing[*]} missing; install the Debian package(s) (apt-get install ${missing[*]}) or run as root"
  exit 0
fi
say "installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d answering 101 tells invoke-rc.d / deb-systemd-invoke not to start services
# during this install; an existing policy is left as it is.
policy=/usr/sbin/policy-rc.d own_policy=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
fi
trap '[ -z "$own_policy" ] || rm -f "$policy"' EXIT
apt-get update -qq >&2
apt-get install -y -qq "${missing[@]}" >&2
