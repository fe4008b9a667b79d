#!/usr/bin/env bash
# Installs Debian's `chromium` package, idempotently. Only tests/reports.rs uses it: it opens the
# single-file HTML report in headless Chromium, screenshots it into the run folder and checks the DOM.
# Nothing else in meshproof needs a browser, so this script never fails setup: when Chromium cannot
# be installed it says so and exits 0, and the browser test reports itself as not run (it fails only
# under MESHPROOF_REQUIRE_CHROMIUM=1).
#
# - /usr/bin/chromium present: nothing is done (no apt, no network), well under a second.
# - the package is not installed: `apt-get update`, then `apt-get install -y chromium`.
# Recommends are skipped (--no-install-recommends): headless rendering needs none of them, and the
# DejaVu fonts come in as a dependency.
# Measured here (Debian 12, 2 cores, Chromium 156): first install 15.5 s (chromium, chromium-common
# and their libraries, ~360 MB unpacked); reinstall including `apt-get update` 9.9 s; a run with
# Chromium present 0.07 s. The script prints the time it took.
set -euo pipefail

say() { printf 'setup: chromium: %s\n' "$*"; }

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    say "already installed at $CHROMIUM ($("$CHROMIUM" --version 2>/dev/null | head -n1 || echo 'version unknown'))"
    exit 0
fi

not_installed() {
    say "NOT INSTALLED: $*"
    say "  the HTML report still works in any browser; only the headless-browser test (tests/reports.rs)"
    say "  reports itself as not run (it fails only under MESHPROOF_REQUIRE_CHROMIUM=1)."
    say "  to install by hand: apt-get update && apt-get install -y chromium"
    exit 0
}

if ! command -v apt-get >/dev/null 2>&1; then
    not_installed "apt-get not found (not a Debian/Ubuntu machine); install Chromium with your package manager"
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        not_installed "installing packages needs root (or password-less sudo)"
    fi
fi

export DEBIAN_FRONTEND=noninteractive
start=$(date +%s)

# The package lists are refreshed only when the package is not installed yet (a half-removed
# install, where dpkg knows chromium but the binary is gone, goes straight to the install).
if ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q 'install ok installed'; then
    say "running apt-get update (chromium is not installed)"
    if ! "${SUDO[@]}" apt-get update -qq; then
        not_installed "apt-get update failed (see above)"
    fi
fi

say "installing chromium with apt-get"
if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
    not_installed "apt-get install -y chromium failed (see above)"
fi
elapsed=$(($(date +%s) - start))

if [ -x "$CHROMIUM" ]; then
    say "installed $("$CHROMIUM" --version 2>/dev/null | head -n1 || echo chromium) in ${elapsed}s"
else
    not_installed "apt-get reported success but $CHROMIUM is missing"
fi
