#!/usr/bin/env bash
# Installs SPIRE's `spire-server` and `spire-agent`, pinned, into $MESHPROOF_CACHE/bin, idempotently.
# The lab's `spire` identity provider (src/target/lab/spire.rs) runs them as real processes; it finds
# them via MESHPROOF_SPIRE_SERVER / MESHPROOF_SPIRE_AGENT, PATH, or this cache.
#
# Built from source with CGO on (SPIRE's sqlite3 datastore needs cgo). Go's module and build caches
# live under the same cache dir ($MESHPROOF_CACHE/go), so removing $MESHPROOF_CACHE removes
# everything and a rebuild after a version bump reuses what it can. When both cached binaries
# already report the pinned version nothing is built (a re-run takes well under a second).
#
# How it builds: first the canonical `go install .../cmd/spire-server@vX`. Some module proxies
# refuse part of SPIRE's dependency graph (seen here: proxy.golang.org answers 403 for the module's
# version list, which `go install pkg@version` reads for its deprecation check, and for
# github.com/Keyfactor/ejbca-go-client-sdk@v1.1.0, used only by the EJBCA UpstreamAuthority plugin).
# Then it builds the same two commands from a small wrapper module pinned to exactly SPIRE's own
# go.mod, replacing only a dependency the proxy will not serve (ejbca-go-client-sdk → v1.0.2,
# API-compatible for that plugin, which the lab never configures). Which path was taken is printed.
#
# The first build compiles SPIRE and its dependencies (cloud SDKs included): measured on this
# 2-core machine at 11 min (660 s, sharing the CPUs with another Go build) plus ~1 min of module
# download. Without Go this prints how to get it and exits 0: the SPIRE lab test
# (tests/lab_spire.rs) then reports itself as not run and fails only under MESHPROOF_REQUIRE_SPIRE=1.
set -euo pipefail

SPIRE_VERSION="1.15.3"   # go.mod needs Go >= 1.26.6; releases: https://github.com/spiffe/spire/releases
SPIRE_MODULE="github.com/spiffe/spire"
# Fallback only: a dependency some proxies refuse, and the nearest version they serve.
EJBCA_SDK="github.com/Keyfactor/ejbca-go-client-sdk"
EJBCA_SDK_FALLBACK="v1.0.2"

CACHE="${MESHPROOF_CACHE:-$HOME/.cache/meshproof}"
BIN_DIR="$CACHE/bin"
SERVER="$BIN_DIR/spire-server"
AGENT="$BIN_DIR/spire-agent"

say() { printf 'setup: spire: %s\n' "$*"; }

# Both binaries print their version on `--version` (to stderr): "1.15.3" when stamped the way
# SPIRE's Makefile stamps releases (as below), "1.15.3-dev-<hash>" otherwise.
reported_version() { "$1" --version 2>&1 | head -n1 || true; }
reports_pinned_version() { [ -x "$1" ] && [ "$(reported_version "$1")" = "$SPIRE_VERSION" ]; }

if reports_pinned_version "$SERVER" && reports_pinned_version "$AGENT"; then
    say "$SPIRE_VERSION already installed at $BIN_DIR (nothing to do)"
    exit 0
fi

not_installed() {
    say "NOT INSTALLED: $*"
    say "  the SPIRE lab test (tests/lab_spire.rs) will report itself as not run."
    exit 0
}

if ! command -v go >/dev/null 2>&1; then
    say "go is missing, so SPIRE $SPIRE_VERSION cannot be built."
    say "  install Go >= 1.26.6 (https://go.dev/dl/ or your package manager) and a C compiler"
    say "  (e.g. apt-get install gcc; the sqlite3 datastore needs cgo), then re-run scripts/setup."
    not_installed "go not found"
fi
if ! command -v "${CC:-cc}" >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
    say "no C compiler found; SPIRE's sqlite3 datastore needs cgo: install one (e.g. apt-get install gcc)."
    not_installed "no C compiler"
fi

mkdir -p "$BIN_DIR" "$CACHE/go/mod" "$CACHE/go/build"
export GOBIN="$BIN_DIR"
export GOMODCACHE="$CACHE/go/mod"
export GOCACHE="$CACHE/go/build"
# Go marks module files read-only by default, which would make `rm -rf $MESHPROOF_CACHE` fail.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-modcacherw"
export CGO_ENABLED=1
LDFLAGS="-s -w -X $SPIRE_MODULE/pkg/common/version.gittag=$SPIRE_VERSION"

for bin in "$SERVER" "$AGENT"; do
    if [ -e "$bin" ] && ! reports_pinned_version "$bin"; then
        say "$(basename "$bin") reports '$(reported_version "$bin")', not $SPIRE_VERSION; rebuilding"
    fi
done

say "building spire-server and spire-agent $SPIRE_VERSION with $(go version | awk '{print $3}') (first build takes minutes)"
start=$(date +%s)

# One invocation for both commands: they share most packages, so they are compiled once.
if go install -trimpath -ldflags "$LDFLAGS" \
    "$SPIRE_MODULE/cmd/spire-server@v$SPIRE_VERSION" \
    "$SPIRE_MODULE/cmd/spire-agent@v$SPIRE_VERSION" 2>"$CACHE/go/spire-install.err"; then
    how="go install $SPIRE_MODULE/cmd/...@v$SPIRE_VERSION"
else
    say "plain 'go install' failed ($(tail -n1 "$CACHE/go/spire-install.err")); building from a pinned wrapper module"
    work="$CACHE/go/spire-build"
    mkdir -p "$work"
    spire_mod="$(go mod download -json "$SPIRE_MODULE@v$SPIRE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
    [ -f "$spire_mod" ] || not_installed "cannot download $SPIRE_MODULE@v$SPIRE_VERSION's go.mod"
    # Exactly SPIRE's own requirements (so every dependency is at the version SPIRE tested),
    # plus SPIRE itself.
    {
        sed "s#^module $SPIRE_MODULE\$#module meshproof.local/spire-build#" "$spire_mod"
        printf '\nrequire %s v%s\n' "$SPIRE_MODULE" "$SPIRE_VERSION"
    } >"$work/go.mod"
    ejbca_pinned="$(awk -v m="$EJBCA_SDK" '$1 == m { print $2 }' "$spire_mod")"
    if [ -n "$ejbca_pinned" ] && ! go mod download "$EJBCA_SDK@$ejbca_pinned" >/dev/null 2>&1; then
        say "the proxy refuses $EJBCA_SDK@$ejbca_pinned; using $EJBCA_SDK_FALLBACK (EJBCA upstream-authority plugin only)"
        printf '\nreplace %s => %s %s\n' "$EJBCA_SDK" "$EJBCA_SDK" "$EJBCA_SDK_FALLBACK" >>"$work/go.mod"
    fi
    # Importing the two main packages (under a build tag) makes `go mod tidy` record every module
    # they need in go.sum.
    cat >"$work/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "github.com/spiffe/spire/cmd/spire-agent"
	_ "github.com/spiffe/spire/cmd/spire-server"
)
EOF
    (cd "$work" && go mod tidy) || not_installed "go mod tidy in $work failed (see above)"
    (cd "$work" && go build -trimpath -ldflags "$LDFLAGS" -o "$BIN_DIR/" \
        "$SPIRE_MODULE/cmd/spire-server" "$SPIRE_MODULE/cmd/spire-agent") ||
        not_installed "go build in $work failed (see above)"
    how="wrapper module $work ($(grep -c '^replace' "$work/go.mod" || true) replace)"
fi
elapsed=$(( $(date +%s) - start ))

for bin in "$SERVER" "$AGENT"; do
    if ! reports_pinned_version "$bin"; then
        say "WARNING: built $bin but '--version' says '$(reported_version "$bin")'; expected $SPIRE_VERSION"
        exit 0
    fi
done
say "installed spire-server and spire-agent $SPIRE_VERSION at $BIN_DIR in ${elapsed}s via $how"
