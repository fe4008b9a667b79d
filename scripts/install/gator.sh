#!/usr/bin/env bash
# Installs Gatekeeper's `gator` CLI, pinned, into $MESHPROOF_CACHE/bin, idempotently. tests/gator.rs
# uses it to cross-check the in-process Rego evaluation (src/policy/gatekeeper) against Gatekeeper
# itself; it finds gator via MESHPROOF_GATOR, PATH, or this cache.
#
# Built from source with `go install` (pure Go, CGO off). Go's module and build caches live under
# the same cache dir, so removing $MESHPROOF_CACHE removes everything. When the cached binary
# already reports the pinned version nothing is built (a re-run takes well under a second).
#
# The first build compiles Gatekeeper, OPA and the Kubernetes client libraries: measured on this
# 2-core machine at 6m23s and 7m07s from cold caches, module download included (~4.5 min of CPU;
# other builds were running). The caches take ~2 GB. Without Go
# this prints how to get it and exits 0: the gator cross-check test then reports itself as not run
# and fails only under MESHPROOF_REQUIRE_GATOR=1.
set -euo pipefail

# go.mod of v3.23.1 needs Go >= 1.26.0. Check releases with:
#   go list -m -versions github.com/open-policy-agent/gatekeeper/v3
GATOR_VERSION="v3.23.1"
GATEKEEPER_MODULE="github.com/open-policy-agent/gatekeeper/v3"

CACHE="${MESHPROOF_CACHE:-$HOME/.cache/meshproof}"
BIN_DIR="$CACHE/bin"
GATOR="$BIN_DIR/gator"

say() { printf 'setup: gator: %s\n' "$*"; }

# `gator --version` prints "gator version v3.23.1 (Feature State: beta), opa/..., frameworks/..."
# when built with the version stamped in (below), "gator version devel (...)" otherwise.
reports_pinned_version() {
    [ -x "$GATOR" ] || return 1
    local reported
    reported="$("$GATOR" --version 2>/dev/null | head -n1 || true)"
    case "$reported " in
        "gator version $GATOR_VERSION "*) return 0 ;;
        *) return 1 ;;
    esac
}

if reports_pinned_version; then
    say "$GATOR_VERSION already installed at $GATOR (nothing to do)"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    say "NOT INSTALLED: go is missing, so gator $GATOR_VERSION cannot be built."
    say "  install Go >= 1.26 (https://go.dev/dl/ or your package manager), then re-run scripts/setup."
    say "  the gator cross-check test (tests/gator.rs) will report itself as not run."
    exit 0
fi

mkdir -p "$BIN_DIR" "$CACHE/go/mod" "$CACHE/go/build"
export GOBIN="$BIN_DIR"
export GOMODCACHE="$CACHE/go/mod"
export GOCACHE="$CACHE/go/build"
# -modcacherw: Go marks module files read-only by default, which would make `rm -rf $MESHPROOF_CACHE`
# fail; keep the cache removable.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-modcacherw"
export CGO_ENABLED=0

if [ -e "$GATOR" ]; then
    say "cached gator reports '$("$GATOR" --version 2>&1 | head -n1 || true)', not $GATOR_VERSION; rebuilding"
fi
say "building $GATEKEEPER_MODULE/cmd/gator@$GATOR_VERSION with $(go version | awk '{print $3}')"
say "  (the first build takes several minutes: 6-7 min on 2 cores)"
start=$(date +%s)
# Stamp the version the way Gatekeeper's release builds do, so `gator --version` can be checked.
if ! go install \
    -ldflags "-X $GATEKEEPER_MODULE/pkg/version.Version=$GATOR_VERSION" \
    "$GATEKEEPER_MODULE/cmd/gator@$GATOR_VERSION"; then
    say "NOT INSTALLED: 'go install $GATEKEEPER_MODULE/cmd/gator@$GATOR_VERSION' failed (see above)."
    say "  the gator cross-check test (tests/gator.rs) will report itself as not run."
    exit 0
fi
elapsed=$(($(date +%s) - start))

if reports_pinned_version; then
    say "installed $GATOR_VERSION at $GATOR in ${elapsed}s"
else
    say "WARNING: built $GATOR in ${elapsed}s, but it reports '$("$GATOR" --version 2>&1 | head -n1 || true)'"
    say "  instead of $GATOR_VERSION; the cross-check test will use it anyway."
fi
