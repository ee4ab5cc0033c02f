#!/usr/bin/env bash
# Builds helm from its Go module at the version pinned below and caches it under
# target/helm/<version>/bin, so it is built once. Prints the binary's path on stdout;
# progress goes to stderr.
#
# Kept apart from tests/kube's Go module on purpose: `go install pkg@version` resolves
# helm's own go.mod, so helm's client-go and the control plane's never have to agree.
#
# v3.20.x: the newest helm 3 line built against client-go 0.35, the same Kubernetes
# minor as the control plane in tests/kube (1.35). Bump both together.
set -euo pipefail

version=v3.20.2
kube_major=1   # the Kubernetes version helm assumes for `template`/`lint` when not
kube_minor=35  # talking to a cluster (capabilities.KubeVersion); keep equal to tests/kube

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out="${CARGO_TARGET_DIR:-$root/target}/helm/$version"
bin="$out/bin/helm"

if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: go is not installed; install Go 1.25 or newer" >&2; exit 1; }

mkdir -p "$out/bin"
exec 9>"$out/.lock"
flock 9
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi

# The same variables helm's own Makefile sets, so `helm version` tells the truth and
# `helm template` renders `.Capabilities.KubeVersion` as the control plane's version.
ldflags="-s -w \
 -X helm.sh/helm/v3/internal/version.version=$version \
 -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$kube_major \
 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kube_minor \
 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$kube_major \
 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kube_minor"

echo "==> building helm $version into $out/bin (a few minutes the first time)" >&2
start=$(date +%s)
# GOBIN takes the binary; -mod and workspace settings of the caller must not leak in.
cd "$out"
CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-buildvcs=false" GOWORK=off GOBIN="$out/bin.tmp" \
  go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$version"
mv "$out/bin.tmp/helm" "$bin"
rmdir "$out/bin.tmp"
echo "==> helm built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
