#!/usr/bin/env bash
# proto.sh lints proto/ and regenerates the committed Go code next to the .proto files.
#
# It installs the pinned tools it is missing (or finds at another version) with
# `go install` into $(go env GOBIN), else $(go env GOPATH)/bin, then runs `buf lint`
# and `buf generate` with the local plugins (no protoc, no remote plugins).
# Set BUF_BREAKING_AGAINST (e.g. '.git#branch=main') to also run `buf breaking`.
# The versions are pinned so generated headers do not churn between machines;
# protoc-gen-go follows google.golang.org/protobuf in go.mod.
set -euo pipefail

BUF_VERSION=${BUF_VERSION:-v1.75.0}
PROTOC_GEN_GO_VERSION=${PROTOC_GEN_GO_VERSION:-v1.36.12}
PROTOC_GEN_GO_GRPC_VERSION=${PROTOC_GEN_GO_GRPC_VERSION:-v1.6.2}

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(go env GOBIN)
[ -n "$bin" ] || bin="$(go env GOPATH | cut -d: -f1)/bin"
export PATH="$bin:$PATH"

say() { printf 'proto: %s\n' "$*" >&2; }

ensure() { # ensure BINARY PACKAGE VERSION: install PACKAGE@VERSION unless BINARY reports VERSION
  local have=""
  if [ -x "$bin/$1" ]; then
    have=$("$bin/$1" --version 2>/dev/null | grep -Eo '[0-9]+\.[0-9]+\.[0-9]+' | head -n 1 || true)
  fi
  if [ "$have" != "${3#v}" ]; then
    say "installing $2@$3 into $bin${have:+ (found $have)}"
    go install "$2@$3"
  fi
}

ensure buf github.com/bufbuild/buf/cmd/buf "$BUF_VERSION"
ensure protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
ensure protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

cd "$root"
say "buf lint"
buf lint
if [ -n "${BUF_BREAKING_AGAINST:-}" ]; then
  say "buf breaking --against $BUF_BREAKING_AGAINST"
  buf breaking --against "$BUF_BREAKING_AGAINST"
fi
say "buf generate"
buf generate
say "done: $(find proto -name '*.pb.go' | wc -l) generated files under proto/"
