#!/usr/bin/env bash
# `just bench`: installs the peers and load generators when missing, builds Traefik from its Go
# module (bench/traefik/build.sh) and release binaries (the proxy with the dist profile, as
# its image ships it), then runs portico-bench inside a private
# network namespace (tests/netns.sh), pinned to CPU 0 (it starts the proxy under test on CPU 1).
# Results: target/bench/results.md.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
start=$(date +%s)

# Debian/Ubuntu package → the command it provides.
declare -A needs=([nginx-light]=nginx [haproxy]=haproxy [wrk]=wrk [nghttp2-client]=h2load)
missing=()
for pkg in "${!needs[@]}"; do
  cmd=${needs[$pkg]}
  command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "==> installing ${missing[*]} (apt-get)"
  sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  if ! command -v apt-get >/dev/null; then
    echo "bench: install ${missing[*]} with your package manager (nginx, haproxy, wrk, h2load)" >&2
    exit 1
  fi
  $sudo apt-get update
  # Keep Debian's service scripts from starting the system nginx/haproxy.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi
# `--profile` records the proxy with perf.
if [[ " $* " == *" --profile "* ]] && ! command -v perf >/dev/null; then
  echo "==> installing linux-perf (apt-get) for --profile"
  sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends linux-perf
fi
# `--phases instructions` runs the proxies under valgrind's callgrind.
if [[ " $* " == *instructions* ]] && ! command -v callgrind_control >/dev/null; then
  echo "==> installing valgrind (apt-get) for --phases instructions"
  sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends valgrind
fi
for cmd in taskset unshare; do
  command -v "$cmd" >/dev/null || { echo "bench: $cmd is missing (util-linux)" >&2; exit 1; }
done
if (($(nproc) < 2)); then
  echo "bench: needs at least 2 CPUs (the proxy alone on CPU 1, the load on CPU 0)" >&2
  exit 1
fi

# Traefik, the fourth contender, is built from its Go module (bench/traefik/build.sh) unless
# --contenders leaves it out. A failed build fails the run: a missing contender must show.
contenders=portico,nginx,haproxy,traefik
prev=""
for a in "$@"; do
  case "$a" in
    --contenders=*) contenders=${a#--contenders=} ;;
  esac
  [[ $prev == --contenders ]] && contenders=$a
  prev=$a
done
traefik_args=()
if [[ ",$contenders," == *,traefik,* ]]; then
  command -v go >/dev/null || { echo "bench: the traefik contender is built with Go 1.26 or newer, which is missing (or leave it out: --contenders portico,nginx,haproxy)" >&2; exit 1; }
  echo "==> Traefik (bench/traefik/build.sh; several minutes the first time, then cached under target/traefik/)"
  if ! traefik=$(bash bench/traefik/build.sh); then
    echo "bench: building Traefik failed (the go build's output is above); fix it or leave it out: --contenders portico,nginx,haproxy" >&2
    exit 1
  fi
  traefik_args=(--traefik-binary "$traefik")
fi

echo "==> cargo build --release (portico-operator, portico-tests binaries, portico-bench)"
cargo build --release -p portico-operator -p portico-tests -p portico-bench --bins
# The proxy measured is the one the image ships: the dist profile (whole-program LTO).
echo "==> cargo build --profile dist -p portico-proxy (several minutes the first time)"
cargo build --profile dist -p portico-proxy --bins

echo "==> benchmarks inside a private network namespace (tests/netns.sh); about 15 minutes"
CARGO_NET_OFFLINE=true tests/netns.sh taskset -c 0 "$root/target/release/portico-bench" run "${traefik_args[@]}" "$@"
echo "==> just bench took $(( $(date +%s) - start )) s"
