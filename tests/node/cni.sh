#!/usr/bin/env bash
# Builds the CNI plugins the node tier uses (bridge, host-local, loopback) from
# github.com/containernetworking/plugins at the version pinned below, and caches them under
# target/cni/<version>/bin. Prints that directory on stdout; progress goes to stderr.
#
# A module of its own, like helm (tests/helm/build.sh): `go install pkg@version` resolves the
# plugins' own go.mod, so they never have to agree with the Kubernetes pins in tests/kube.
set -euo pipefail

version=v1.10.0
plugins=(bridge host-local loopback)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out="${CARGO_TARGET_DIR:-$root/target}/cni/$version"

have_all() { for p in "${plugins[@]}"; do [[ -x "$out/bin/$p" ]] || return 1; done; }
if have_all; then echo "$out/bin"; exit 0; fi

command -v go >/dev/null || { echo "cni.sh: go is not installed; install Go 1.25 or newer" >&2; exit 1; }
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
if have_all; then echo "$out/bin"; exit 0; fi

echo "==> building the CNI plugins $version (${plugins[*]}) into $out/bin" >&2
start=$(date +%s)
cd "$out"
rm -rf "$out/bin.tmp"
pkgs=()
for p in "${plugins[@]}"; do
  case "$p" in
    host-local) pkgs+=("github.com/containernetworking/plugins/plugins/ipam/host-local@$version") ;;
    *) pkgs+=("github.com/containernetworking/plugins/plugins/main/$p@$version") ;;
  esac
done
CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-buildvcs=false" GOWORK=off GOBIN="$out/bin.tmp" \
  go install -trimpath -ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$version" "${pkgs[@]}"
rm -rf "$out/bin"
mv "$out/bin.tmp" "$out/bin"
echo "==> CNI plugins built in $(( $(date +%s) - start ))s" >&2
echo "$out/bin"
