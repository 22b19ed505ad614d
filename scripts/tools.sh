#!/usr/bin/env bash
# tools.sh installs the command-line tools the tests use besides Go, PostgreSQL and Redis:
# promtool (Debian package prometheus) for the alert rules under deploy/monitoring. As root it
# installs what is missing; otherwise it says what to install (the tests that need a missing
# tool fail under CI and are skipped elsewhere).
set -euo pipefail

say() { printf 'tools: %s\n' "$*" >&2; }

need() { # need COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ]; then
    say "$1 is missing; install the Debian package $2"; return 0
  fi
  say "installing $2 with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "$2" >&2
}

need promtool prometheus
