#!/usr/bin/env bash
# The node tier (`just test-node`): a real kubelet, kube-scheduler, kube-proxy, containerd and
# runc with the CNI bridge, on which the chart, the operator, the proxies and test backends
# run as real pods from images built here (tests/node/images.sh). Needs root.
#
#   run.sh [<test binary args>...]
#   run.sh --check      whether this machine can run it (the reason on stderr when not)
#
# Builds (or reuses) everything first, then runs the `node` test of portico-tests inside new
# network, mount and PID namespaces (tests/node/inside.sh). When they end every process in
# them is gone and so are their mounts; the kubelet's cgroups, made under a parent of this
# run's own, are removed here, also after a failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

# Whether this machine can run the node tier; says why not on stderr.
available() {
  if [[ $(id -u) != 0 ]]; then
    echo "the node tier needs root (this is uid $(id -u))" >&2
    echo "  containerd and runc start containers, the kubelet mounts volumes and creates cgroups," >&2
    echo "  and the run makes its own network, mount and PID namespaces. Run it as root (for" >&2
    echo "  example sudo -E just test-node). The other tiers need no root: just test." >&2
    return 1
  fi
  local missing=() cmd
  for cmd in containerd containerd-shim-runc-v2 runc ctr iptables iptables-restore jq objcopy unshare ip mount; do
    command -v "$cmd" >/dev/null || missing+=("$cmd")
  done
  if ((${#missing[@]})); then
    echo "the node tier needs ${missing[*]}" >&2
    echo "  on Debian: apt-get install containerd runc iptables jq binutils iproute2 util-linux" >&2
    return 1
  fi
  if [[ ! -d /sys/fs/cgroup/memory && ! -f /sys/fs/cgroup/cgroup.controllers ]]; then
    echo "the node tier needs a cgroup hierarchy under /sys/fs/cgroup" >&2
    return 1
  fi
}

if [[ "${1:-}" == --check ]]; then
  available
  exit
fi
if ! reason=$(available 2>&1); then
  echo "just test-node: FAILED: $reason" >&2
  exit 1
fi

start=$(date +%s)
target="${CARGO_TARGET_DIR:-$root/target}"
kube_bin=$(bash tests/kube/build.sh node)
cni_bin=$(bash tests/node/cni.sh)
helm_bin=$(bash tests/helm/build.sh)
echo "==> cargo build --workspace --bins; the node test" >&2
cargo build -q --workspace --bins
cargo test -q -p portico-tests --test node --no-run
images="$target/node/images"
mkdir -p "$target/node"
bash tests/node/images.sh "$images" "$target/debug" "$kube_bin/pause"
echo "==> built in $(( $(date +%s) - start ))s" >&2

run="$target/node/run"
cgroup="portico-node-$$"

# One run at a time per target directory: they share target/node/run.
exec 8>"$target/node/.lock"
flock -n 8 || { echo "just test-node: FAILED: another node tier run holds $target/node/.lock" >&2; exit 1; }

# remove_cgroup <dir>: kills what is left in it, then removes it, deepest first.
remove_cgroup() {
  local dir=$1 pids
  for _ in 1 2 3 4 5; do
    pids=$(find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null)
    [[ -z "$pids" ]] && break
    kill -9 $pids 2>/dev/null
    sleep 0.2
  done
  find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
  [[ ! -d "$dir" ]] || echo "test-node: could not remove cgroup $dir" >&2
}

# Cgroups of runs that were killed before they could clean up (their run.sh is gone).
for dir in /sys/fs/cgroup/*/portico-node-*; do
  [[ -d "$dir" ]] || continue
  pid=${dir##*-}
  [[ -d "/proc/$pid" ]] || remove_cgroup "$dir"
done

cleanup() {
  local rc=$?
  set +e
  # The namespaces are gone, and with them every process and mount in them; anything that
  # escaped into this run's cgroups is killed, then the cgroups go, deepest first.
  for hierarchy in /sys/fs/cgroup/*/; do
    [[ -d "$hierarchy$cgroup" ]] && remove_cgroup "$hierarchy$cgroup"
  done
  # Nothing of the run is mounted out here; should something be, unmount it deepest first.
  awk -v run="$run" '$5 == run || index($5, run "/") == 1 { print $5 }' /proc/self/mountinfo |
    sort -r | while read -r m; do umount -l "$m"; done
  # The pods' own logs, kept beside the node processes' logs in target/test-logs.
  if [[ -d "$run/pod-logs" ]]; then
    mkdir -p "$target/test-logs/node-pods"
    rm -rf "$target/test-logs/node-pods/"*
    cp -r "$run/pod-logs/." "$target/test-logs/node-pods/"
  fi
  rm -rf "$run"
  echo "==> test-node took $(( $(date +%s) - start ))s in all (rc $rc)" >&2
  exit $rc
}
trap cleanup EXIT

# A run killed hard may have left its directory; it holds no mounts out here.
rm -rf "$run"
mkdir -p "$run"
# A cgroup parent of this run's own in every v1 hierarchy (the kubelet's cgroupRoot), so the
# pods' cgroups never mix with the machine's and are removed with it.
for hierarchy in /sys/fs/cgroup/*/; do
  [[ "$hierarchy" == */unified/ ]] && continue
  mkdir -p "$hierarchy$cgroup"
  if [[ -f "$hierarchy/cpuset.cpus" ]]; then
    cat "$hierarchy/cpuset.cpus" >"$hierarchy$cgroup/cpuset.cpus"
    cat "$hierarchy/cpuset.mems" >"$hierarchy$cgroup/cpuset.mems"
  fi
done

echo "==> running the node tier inside new network, mount and PID namespaces" >&2
PORTICO_NODE_DIR="$run" \
PORTICO_NODE_CGROUP="/$cgroup" \
PORTICO_NODE_IMAGES="$images" \
PORTICO_KUBE_BIN="$kube_bin" \
PORTICO_CNI_BIN="$cni_bin" \
PORTICO_HELM="$helm_bin" \
CARGO_NET_OFFLINE=true \
  unshare --net --mount --pid --fork --kill-child --mount-proc --propagation private \
  bash "$here/inside.sh" cargo test -q -p portico-tests --test node -- --nocapture "$@"
