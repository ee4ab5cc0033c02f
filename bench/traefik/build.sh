#!/usr/bin/env bash
# Builds Traefik, the fourth contender of `just bench`, from its Go module at the version
# pinned in go.mod/go.sum, and caches it under target/traefik/<hash>/ so it is built only
# when this folder changes. Prints the binary's path on stdout; progress goes to stderr.
#
# Not `go install github.com/traefik/traefik/v3/cmd/traefik@version`: the go command
# refuses that for a module whose go.mod has replace directives, and Traefik's has three
# (plus an exclude). This wrapper module names Traefik's command as a `tool` and repeats
# them where it can; go.mod says why each differs. Three replacements are folders that the
# build makes in a scratch copy of this one, target/traefik/<hash>/src/:
#   ext/           stands in for Traefik's nested module github.com/traefik/traefik/dynamic/ext
#                  (module zips leave nested modules out, and the proxy does not serve it);
#   go-http-auth/  upstream github.com/abbot/go-http-auth in place of Traefik's fork, and
#   lego/          lego without its DNS-01 providers: each the module version named below,
#                  checked against its pinned sum, copied from the module cache, with the
#                  files under patches/<folder>/ put over it.
# What is left out or stubbed (ACME DNS challenges, the fork's digest `stale` flag) is off
# the request path; the benchmark configures neither.
#
# `build.sh pin` runs `go mod tidy` in that copy and writes go.mod/go.sum back here (after a
# version bump: `go list -m -versions github.com/traefik/traefik/v3`, edit go.mod, compare
# its replace and exclude lines with Traefik's own go.mod, then `build.sh pin`).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
mode=${1:-build}
case "$mode" in
  build | pin) ;;
  *) echo "usage: build.sh [pin]" >&2; exit 2 ;;
esac
version=$(awk '$1 == "require" && $2 == "github.com/traefik/traefik/v3" { print $3; exit }' "$here/go.mod")
key=$(cd "$here" && find . -type f | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)
out="${CARGO_TARGET_DIR:-$root/target}/traefik/$key"
bin="$out/traefik"

if [[ $mode == build && -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: go is not installed; install Go 1.26 or newer" >&2; exit 1; }

mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
if [[ $mode == build && -x "$bin" ]]; then echo "$bin"; exit 0; fi

export CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off GOFLAGS="-buildvcs=false"
start=$(date +%s)
echo "==> building Traefik $version into $out (downloads ~300 Go modules and takes several minutes the first time)" >&2

# module, version, its h1: sum (`go mod download -json` prints it), folder under src/.
patched=(
  "github.com/abbot/go-http-auth v0.4.0 h1:QjmvZ5gSC7jm3Zg54DqWE/T5m1t2AfDu6QlXJT0EVT0= go-http-auth"
  "github.com/go-acme/lego/v5 v5.4.1 h1:Jt6xAP9xQrJ3SLLGgxejfDDd3pzdrmuLCWe4oTqHHQc= lego"
)
# A field of `go mod download -json`, which downloads the module version if needed.
download_field() { go mod download -json "$1" | tr -d '\n\t' | sed -n "s/.*\"$2\": *\"\([^\"]*\)\".*/\1/p"; }

cd "$out"  # outside any module, for the downloads below
src="$out/src"
rm -rf "$src"
mkdir -p "$src"
cp -r "$here/go.mod" "$here/go.sum" "$here/ext" "$src/"
traefik_mod=$(download_field "github.com/traefik/traefik/v3@$version" GoMod)
for entry in "${patched[@]}"; do
  read -r module module_version sum folder <<<"$entry"
  # Traefik's go.mod must ask for the version patched here (go-http-auth: Traefik asks for a
  # fork instead, any version).
  wanted=$(awk -v m="$module" '$1 == m { print $2; exit }' "$traefik_mod")
  if [[ $folder == lego && $wanted != "$module_version" ]]; then
    echo "build.sh: Traefik $version requires $module $wanted, the patch is for $module_version; update the patched list" >&2
    exit 1
  fi
  got=$(download_field "$module@$module_version" Sum)
  if [[ $got != "$sum" ]]; then
    echo "build.sh: $module@$module_version has sum '$got', pinned '$sum'" >&2
    exit 1
  fi
  cp -r "$(download_field "$module@$module_version" Dir)" "$src/$folder"
  chmod -R u+w "$src/$folder"
  cp -r "$here/patches/$folder/." "$src/$folder/"
done
# This test names every provider package the patch leaves out.
rm -f "$src/lego/providers/dns/dns_providers_test.go"
cd "$src"

if [[ $mode == pin ]]; then
  go mod tidy
  cp go.mod go.sum "$here/"
  # The pins just changed, and with them the cache key: this directory is stale.
  rm -rf "$out"
  echo "==> pinned Traefik $version in $here/go.mod and go.sum" >&2
  exit 0
fi

# The variable Traefik's own Makefile sets, so `traefik version` tells the truth.
go build -mod=readonly -trimpath -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$version" \
  -o "$bin.tmp" github.com/traefik/traefik/v3/cmd/traefik
mv "$bin.tmp" "$bin"
rm -rf "$src"
echo "==> Traefik $version built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
