#!/usr/bin/env bash
# Installs Gatekeeper's `gator` CLI, pinned, into $MESHPROOF_CACHE/bin. Idempotent: when the cached
# binary already reports the pinned version nothing is built. gator is only used to cross-check the
# in-process Rego evaluation (tests/gator.rs); without Go this prints how to get it and exits 0, and
# that test then reports itself as not run (it fails only under MESHPROOF_REQUIRE_GATOR=1).
#
# The first build compiles Gatekeeper and OPA from source: ~6 minutes on 2 cores, measured here,
# plus the module download. Later runs take well under a second.
set -euo pipefail

GATOR_VERSION="v3.23.1"   # needs Go >= 1.26.0 (its go.mod); check: go list -m -versions github.com/open-policy-agent/gatekeeper/v3
GATOR_MODULE="github.com/open-policy-agent/gatekeeper/v3/cmd/gator"

CACHE="${MESHPROOF_CACHE:-$HOME/.cache/meshproof}"
BIN_DIR="$CACHE/bin"
GATOR="$BIN_DIR/gator"

say() { printf 'setup: gator: %s\n' "$*"; }

# `gator --version` prints "gator version gator/v3.23.1 (linux/amd64) ..."; compare the exact tag.
reports_pinned_version() {
    [ -x "$GATOR" ] || return 1
    local reported
    reported="$("$GATOR" --version 2>/dev/null || true)"
    case " $reported " in
        *"/$GATOR_VERSION "* | *" $GATOR_VERSION "*) return 0 ;;
        *) return 1 ;;
    esac
}

if reports_pinned_version; then
    say "$GATOR_VERSION already installed at $GATOR"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    say "NOT INSTALLED: go is missing, so gator $GATOR_VERSION cannot be built."
    say "  install Go >= 1.26 (https://go.dev/dl/ or your package manager), then re-run scripts/setup."
    say "  the gator cross-check test (tests/gator.rs) will report itself as not run."
    exit 0
fi

mkdir -p "$BIN_DIR"
if [ -e "$GATOR" ]; then
    say "cached binary does not report $GATOR_VERSION ($("$GATOR" --version 2>&1 | head -n1 || true)); rebuilding"
fi
say "building $GATOR_MODULE@$GATOR_VERSION with $(go version | awk '{print $3}') (first build takes minutes)"
start=$(date +%s)
# The build's ldflags stamp the version the way Gatekeeper's own Makefile does, so
# `gator --version` can be compared with the pin.
if ! GOBIN="$BIN_DIR" CGO_ENABLED=0 go install \
    -ldflags "-X github.com/open-policy-agent/gatekeeper/v3/pkg/version.Version=$GATOR_VERSION" \
    "$GATOR_MODULE@$GATOR_VERSION"; then
    say "NOT INSTALLED: 'go install $GATOR_MODULE@$GATOR_VERSION' failed (see above)."
    say "  the gator cross-check test will report itself as not run."
    exit 0
fi
elapsed=$(( $(date +%s) - start ))

if reports_pinned_version; then
    say "installed $GATOR_VERSION at $GATOR in ${elapsed}s"
else
    say "WARNING: built $GATOR but '$GATOR --version' says: $("$GATOR" --version 2>&1 | head -n1 || true)"
    say "  expected $GATOR_VERSION; the gator cross-check test will still use this binary."
fi
