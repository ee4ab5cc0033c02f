#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and etcd from the upstream Go modules
# pinned in go.mod/go.sum, and caches them under target/kube/<hash>/ so they are built
# only when the pins change. Prints the bin directory on stdout; progress goes to stderr.
#
# `build.sh node` also builds what the node tier (`just test-node`) needs from the same
# pins: kubelet, kube-scheduler, kube-proxy and the sandbox's pause command.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
k8s_version=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$here/go.mod")
key=$(cat "$here/go.mod" "$here/go.sum" "$here"/cmd/*/main.go | sha256sum | cut -c1-16)
out="${CARGO_TARGET_DIR:-$root/target}/kube/$key"
bins=(kube-apiserver kube-controller-manager etcd)
case "${1:-}" in
  "") ;;
  node) bins+=(kubelet kube-scheduler kube-proxy pause) ;;
  *) echo "usage: build.sh [node]" >&2; exit 2 ;;
esac

have_all() { for b in "${bins[@]}"; do [[ -x "$out/bin/$b" ]] || return 1; done; }

if have_all; then
  echo "$out/bin"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: go is not installed; install Go 1.25 or newer" >&2; exit 1; }

mkdir -p "$out/bin"
exec 9>"$out/.lock"
flock 9
if have_all; then echo "$out/bin"; exit 0; fi

major=${k8s_version#v}; major=${major%%.*}
minor=${k8s_version#v*.}; minor=${minor%%.*}
ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$k8s_version \
 -X k8s.io/component-base/version.gitMajor=$major \
 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean"

echo "==> building the test control plane (Kubernetes $k8s_version: ${bins[*]}) into $out/bin" >&2
echo "    a cold build takes 10-25 minutes on 2 cores; later runs reuse it" >&2
start=$(date +%s)
cd "$here"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -mod=readonly"
echo "    downloading Go modules..." >&2
go mod download
for b in "${bins[@]}"; do
  echo "    go build $b ($(( $(date +%s) - start ))s elapsed)" >&2
  go build -trimpath -ldflags "$ldflags" -o "$out/bin/$b.tmp" "./cmd/$b"
  mv "$out/bin/$b.tmp" "$out/bin/$b"
done
echo "==> control plane built in $(( $(date +%s) - start ))s" >&2
echo "$out/bin"
