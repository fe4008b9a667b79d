#!/usr/bin/env bash
# Installs a real Kubernetes API server for the kube-facing tests (tests/kube_real_apiserver.rs):
# etcd from Debian, and `kube-apiserver` and `kubectl` built from the Go module proxy at the
# versions pinned in src/target/kube/versions.rs, into $MESHPROOF_CACHE/bin, idempotently. The test
# finds them via MESHPROOF_ETCD / MESHPROOF_KUBE_APISERVER / MESHPROOF_KUBECTL, this cache, or PATH.
#
# Why a wrapper module: k8s.io/kubernetes replaces its staging modules (k8s.io/api, client-go, ...)
# with local paths, so `go install k8s.io/kubernetes/cmd/kube-apiserver@v1.37.0` is refused. The
# wrapper requires k8s.io/kubernetes and points every staging module at its published v0.X.Y. kubectl
# needs no k8s.io/kubernetes at all: k8s.io/kubectl's `cmd.NewDefaultKubectlCommand()` is what
# cmd/kubectl runs, so a four-line main in a second wrapper builds it.
#
# When the cached binaries already report the pinned versions nothing is built (well under a
# second). Without Go or apt this prints what is missing and exits 0: the real-apiserver test then
# reports itself as not run and fails only under MESHPROOF_REQUIRE_KUBE=1.
set -euo pipefail

# Keep equal to KUBERNETES and KUBECTL in src/target/kube/versions.rs (tests/kube_versions.rs checks).
KUBERNETES_VERSION="1.37.0"
KUBECTL_VERSION="1.37.2"
ETCD_PACKAGE="etcd-server"   # Debian's etcd server (bookworm: 3.4.23); `apt-cache policy etcd-server`

CACHE="${MESHPROOF_CACHE:-$HOME/.cache/meshproof}"
BIN_DIR="$CACHE/bin"
APISERVER="$BIN_DIR/kube-apiserver"
KUBECTL="$BIN_DIR/kubectl"

say() { printf 'setup: kube: %s\n' "$*"; }
not_installed() {
    say "NOT INSTALLED: $*"
    say "  the real kube-apiserver test (tests/kube_real_apiserver.rs) will report itself as not run."
    exit 0
}

# `kube-apiserver --version` prints "Kubernetes v1.37.0"; `kubectl version --client` prints
# "Client Version: v1.37.2" (first line) when the version is stamped in as below.
apiserver_ok() { [ -x "$APISERVER" ] && [ "$("$APISERVER" --version 2>/dev/null)" = "Kubernetes v$KUBERNETES_VERSION" ]; }
kubectl_ok() {
    [ -x "$KUBECTL" ] && [ "$("$KUBECTL" version --client 2>/dev/null | head -n1)" = "Client Version: v$KUBECTL_VERSION" ]
}

if ! command -v etcd >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        say "installing etcd ($ETCD_PACKAGE) from Debian"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$ETCD_PACKAGE" >/dev/null ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$ETCD_PACKAGE" >/dev/null; } ||
            not_installed "apt-get install $ETCD_PACKAGE failed"
        # Debian's package starts a system etcd on :2379; the test runs its own on free ports.
        if command -v systemctl >/dev/null 2>&1; then systemctl disable --now etcd >/dev/null 2>&1 || true; fi
    else
        not_installed "etcd not found; install it (Debian: apt-get install $ETCD_PACKAGE) and re-run scripts/setup"
    fi
fi
say "etcd: $(etcd --version 2>/dev/null | head -n1)"

if apiserver_ok && kubectl_ok; then
    say "kube-apiserver v$KUBERNETES_VERSION and kubectl v$KUBECTL_VERSION already installed at $BIN_DIR (nothing to do)"
    exit 0
fi
command -v go >/dev/null 2>&1 || not_installed "go not found; install Go >= 1.26 (https://go.dev/dl/) and re-run scripts/setup"

mkdir -p "$BIN_DIR" "$CACHE/go/mod" "$CACHE/go/build"
export GOMODCACHE="$CACHE/go/mod"
export GOCACHE="$CACHE/go/build"
# Go marks module files read-only by default, which would make `rm -rf $MESHPROOF_CACHE` fail.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-modcacherw"
export CGO_ENABLED=0

# What `hack/lib/version.sh` stamps into a release build, so `--version` reports the pin.
stamp() {
    local v="$1" minor
    minor="$(echo "$v" | cut -d. -f2)"
    local flags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags="$flags -X $pkg.gitVersion=v$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    done
    echo "$flags"
}

build_apiserver() {
    local work="$CACHE/go/kube-apiserver-build" mod staging
    mkdir -p "$work"
    mod="$(go mod download -json "k8s.io/kubernetes@v$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
    [ -f "$mod" ] || not_installed "cannot download k8s.io/kubernetes@v$KUBERNETES_VERSION's go.mod"
    # Every `k8s.io/x => ./staging/src/k8s.io/x` becomes `k8s.io/x => k8s.io/x v0.<minor>.<patch>`.
    staging="$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$mod")"
    {
        printf 'module meshproof.local/kube-apiserver-build\n\ngo 1.26\n\nrequire k8s.io/kubernetes v%s\n\n' "$KUBERNETES_VERSION"
        printf 'replace (\n'
        for m in $staging; do printf '\t%s => %s v0.%s\n' "$m" "$m" "${KUBERNETES_VERSION#1.}"; done
        printf ')\n'
    } >"$work/go.mod"
    cat >"$work/tools.go" <<'EOF'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
EOF
    (cd "$work" && go mod tidy) || not_installed "go mod tidy in $work failed (see above)"
    (cd "$work" && go build -trimpath -ldflags "$(stamp "$KUBERNETES_VERSION")" -o "$APISERVER" \
        k8s.io/kubernetes/cmd/kube-apiserver) || not_installed "go build of kube-apiserver in $work failed (see above)"
}

build_kubectl() {
    local work="$CACHE/go/kubectl-build"
    mkdir -p "$work"
    printf 'module meshproof.local/kubectl-build\n\ngo 1.26\n\nrequire (\n\tk8s.io/kubectl v0.%s\n\tk8s.io/component-base v0.%s\n)\n' \
        "${KUBECTL_VERSION#1.}" "${KUBECTL_VERSION#1.}" >"$work/go.mod"
    # The whole of k8s.io/kubernetes/cmd/kubectl/kubectl.go.
    cat >"$work/main.go" <<'EOF'
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
EOF
    (cd "$work" && go mod tidy) || not_installed "go mod tidy in $work failed (see above)"
    (cd "$work" && go build -trimpath -ldflags "$(stamp "$KUBECTL_VERSION")" -o "$KUBECTL" .) ||
        not_installed "go build of kubectl in $work failed (see above)"
}

if ! apiserver_ok; then
    say "building kube-apiserver v$KUBERNETES_VERSION with $(go version | awk '{print $3}') (first build takes minutes)"
    start=$(date +%s)
    build_apiserver
    apiserver_ok || not_installed "built $APISERVER but '--version' says '$("$APISERVER" --version 2>&1 | head -n1)'"
    say "built kube-apiserver v$KUBERNETES_VERSION in $(($(date +%s) - start))s"
fi
if ! kubectl_ok; then
    say "building kubectl v$KUBECTL_VERSION"
    start=$(date +%s)
    build_kubectl
    kubectl_ok || not_installed "built $KUBECTL but 'version --client' says '$("$KUBECTL" version --client 2>&1 | head -n1)'"
    say "built kubectl v$KUBECTL_VERSION in $(($(date +%s) - start))s"
fi
say "installed kube-apiserver v$KUBERNETES_VERSION and kubectl v$KUBECTL_VERSION at $BIN_DIR"
