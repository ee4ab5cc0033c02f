#!/usr/bin/env bash
# Builds the node tier's container images without a registry or a container builder: each is
# an OCI image archive (oci-layout, index.json, blobs/sha256/...) of one uncompressed layer,
# ready for `ctr -n k8s.io images import`.
#
#   images.sh <out-dir> <portico-bin-dir> [<pause-bin>]
#
# <portico-bin-dir> holds portico-operator, portico-proxy and portico-backend (target/debug or
# target/release); <pause-bin> is the static pause command built by `tests/kube/build.sh node`
# (without it, no pause image is built).
# Writes <out-dir>/<name>.oci.tar and, for tests and humans, <name>.config.json (the image
# config) and <name>.ref (the image reference). Prints nothing on stdout.
#
# The operator and proxy images follow the Dockerfile's runtime contract: the same
# entrypoint, user 65532:65532, exposed ports and environment (its ENV lines are read from
# the Dockerfile here; a test compares them all), no shell, and a root
# filesystem that can be mounted read-only. Their base layer is made here: the shared
# libraries the binaries load, copied from this machine, plus /etc/passwd, /etc/group and
# /tmp. Debug binaries are stripped of their debug info on the way in.
set -euo pipefail

usage="usage: images.sh <out-dir> <portico-bin-dir> [<pause-bin>]"
out=${1:?$usage}
bins=${2:?$usage}
pause=${3:-}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
app_version=$(awk -F'"' '/^appVersion:/ { print $2 }' "$root/charts/portico/Chart.yaml")

# The references the chart's defaults name (image.repository and proxyImage.repository at the
# chart's appVersion), so `helm install` needs no image overrides; the pause reference is
# what the node's containerd config names as its sandbox_image.
operator_ref="ghcr.io/portico-dev/portico-operator:$app_version"
proxy_ref="ghcr.io/portico-dev/portico-proxy:$app_version"
backend_ref="localhost/portico/backend:node"
pause_ref="localhost/portico/pause:node"

mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# base_rootfs <dir> <binary>...: /etc/passwd, /etc/group, /tmp and the shared libraries
# the binaries load (with the dynamic loader), at the paths they are loaded from.
base_rootfs() {
  local dir=$1; shift
  mkdir -p "$dir/etc" "$dir/tmp" "$dir/home/nonroot"
  chmod 1777 "$dir/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
  local lib
  for lib in $(ldd "$@" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u); do
    mkdir -p "$dir$(dirname "$lib")"
    cp -L "$lib" "$dir$lib"
  done
}

# add_binary <dir> <src> <dest>: copies an executable in, without debug info.
add_binary() {
  mkdir -p "$1$(dirname "$3")"
  objcopy --strip-debug "$2" "$1$3" 2>/dev/null || cp "$2" "$1$3"
  chmod 0755 "$1$3"
}

# json_array a b c → ["a","b","c"]
json_array() {
  local first=1 s='['
  for x in "$@"; do
    ((first)) || s+=','
    s+="\"$x\""
    first=0
  done
  echo "$s]"
}

# stage_env <stage>: the KEY=value of each `ENV` line of the Dockerfile's `FROM … AS <stage>`,
# one per line.
stage_env() {
  awk -v stage="$1" '
    toupper($1) == "FROM" { inside = (tolower($NF) == tolower(stage)) && (toupper($(NF-1)) == "AS"); next }
    inside && $1 == "ENV" { print $2 }
  ' "$root/Dockerfile"
}

# image <name> <ref> <rootfs> <user> <ports (comma separated, may be empty)>
#       <env (KEY=value per line, may be empty)> <entrypoint>...
image() {
  local name=$1 ref=$2 rootfs=$3 user=$4 ports=$5 env=$6; shift 6
  local layout="$work/$name"
  mkdir -p "$layout/blobs/sha256"

  # One reproducible, uncompressed layer: its digest is also its diff_id.
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$rootfs" -cf "$layout/layer.tar" .
  local layer_digest layer_size
  layer_digest=$(sha "$layout/layer.tar")
  layer_size=$(size "$layout/layer.tar")
  mv "$layout/layer.tar" "$layout/blobs/sha256/$layer_digest"

  local exposed='{}'
  if [[ -n "$ports" ]]; then
    exposed=$(tr ',' '\n' <<<"$ports" | jq -R '{(. + "/tcp"): {}}' | jq -s -c 'add')
  fi
  local env_json
  env_json=$(jq -R -s -c 'split("\n") | map(select(length > 0))' <<<"$env")
  jq -n -c \
    --arg user "$user" \
    --argjson env "$env_json" \
    --argjson entrypoint "$(json_array "$@")" \
    --argjson exposed "$exposed" \
    --arg diff "sha256:$layer_digest" \
    '{architecture: "amd64", os: "linux",
      config: {User: $user, Entrypoint: $entrypoint, ExposedPorts: $exposed,
               Env: (["PATH=/usr/local/bin:/usr/bin:/bin"] + $env), WorkingDir: "/"},
      rootfs: {type: "layers", diff_ids: [$diff]},
      history: [{created_by: "tests/node/images.sh"}]}' >"$layout/config.json"
  local config_digest config_size
  config_digest=$(sha "$layout/config.json")
  config_size=$(size "$layout/config.json")
  cp "$layout/config.json" "$out/$name.config.json"
  mv "$layout/config.json" "$layout/blobs/sha256/$config_digest"

  jq -n -c \
    --arg cd "sha256:$config_digest" --argjson cs "$config_size" \
    --arg ld "sha256:$layer_digest" --argjson ls "$layer_size" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
      layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $ld, size: $ls}]}' \
    >"$layout/manifest.json"
  local manifest_digest manifest_size
  manifest_digest=$(sha "$layout/manifest.json")
  manifest_size=$(size "$layout/manifest.json")
  mv "$layout/manifest.json" "$layout/blobs/sha256/$manifest_digest"

  jq -n -c \
    --arg md "sha256:$manifest_digest" --argjson ms "$manifest_size" --arg ref "$ref" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $md,
                   size: $ms, annotations: {"io.containerd.image.name": $ref,
                                            "org.opencontainers.image.ref.name": $ref}}]}' \
    >"$layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
    -C "$layout" -cf "$out/$name.oci.tar.tmp" oci-layout index.json blobs
  mv "$out/$name.oci.tar.tmp" "$out/$name.oci.tar"
  echo "$ref" >"$out/$name.ref"
  rm -rf "$layout" "$rootfs"
  echo "    $ref ($((layer_size / 1024 / 1024)) MiB) → $out/$name.oci.tar" >&2
}

echo "==> building the node images into $out" >&2

for component in operator proxy; do
  rootfs="$work/rootfs-$component"
  base_rootfs "$rootfs" "$bins/portico-$component"
  add_binary "$rootfs" "$bins/portico-$component" "/usr/local/bin/portico-$component"
  case $component in
    operator) ref=$operator_ref ports=8080 ;;
    proxy) ref=$proxy_ref ports=80,443,9090 ;;
  esac
  image "portico-$component" "$ref" "$rootfs" 65532:65532 "$ports" "$(stage_env "$component")" \
    "/usr/local/bin/portico-$component"
done

rootfs="$work/rootfs-backend"
base_rootfs "$rootfs" "$bins/portico-backend"
add_binary "$rootfs" "$bins/portico-backend" /usr/local/bin/portico-backend
image backend "$backend_ref" "$rootfs" 65532:65532 8080 "" /usr/local/bin/portico-backend

if [[ -n "$pause" ]]; then
  rootfs="$work/rootfs-pause"
  mkdir -p "$rootfs"
  add_binary "$rootfs" "$pause" /pause
  image pause "$pause_ref" "$rootfs" 65535:65535 "" "" /pause
fi
