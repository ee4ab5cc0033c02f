#!/usr/bin/env bash
# PID 1 of the node tier's network, mount and PID namespaces (started by tests/node/run.sh):
# sets up the node's network and the mounts the runtime needs, runs the command, and when it
# ends kills every process left in the namespace and unmounts everything under the run's
# directory, deepest first (the kubelet bind-mounts its root directory onto itself).
#
# Network: lo, and `node0` (a veth) holding the node's address 10.240.0.1; the CNI bridge
# (cni0, 10.244.0.1/16) appears when the first pod starts. Nothing here reaches the
# machine's network, and nothing outside reaches in.
set -euo pipefail
run=${PORTICO_NODE_DIR:?inside.sh runs under tests/node/run.sh}

# Whether a process other than this one is left (no subprocess, so none of its own).
others() {
  local p
  for p in /proc/[0-9]*; do [[ ${p#/proc/} != 1 ]] && return 0; done
  return 1
}

cleanup() {
  local rc=$?
  set +e
  # PID 1 of the namespace: kill(-1) reaches every other process in it (the kubelet,
  # containerd, its shims and the containers).
  kill -TERM -1 2>/dev/null
  for _ in $(seq 50); do
    others || break
    sleep 0.1
  done
  kill -KILL -1 2>/dev/null
  sleep 0.2
  for _ in 1 2 3 4 5; do
    mounts=$(awk -v run="$run" '$5 == run || index($5, run "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    [[ -z "$mounts" ]] && break
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done <<<"$mounts"
  done
  exit $rc
}
trap cleanup EXIT

ip link set lo up
# The node's "NIC": one end of a veth pair (the kernel may lack the dummy driver), up with
# its peer so it has a carrier.
ip link add name node0 type veth peer name node0-peer
ip addr add 10.240.0.1/24 dev node0
ip link set node0-peer up
ip link set node0 up
# Per network namespace: routing between pods and Services, and bridged traffic through
# kube-proxy's rules.
echo 1 >/proc/sys/net/ipv4/ip_forward
echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || true

# Where containerd, its shims and CNI keep state at fixed paths: private to this run.
mkdir -p /run/containerd /run/netns /var/lib/cni
mount -t tmpfs -o mode=0755 portico-node /run/containerd
mount -t tmpfs -o mode=0755 portico-node /run/netns
mount -t tmpfs -o mode=0755 portico-node /var/lib/cni

# The kubelet sets machine-wide kernel tunables (panic on oops, overcommit, keyring sizes)
# at start. Those are not per namespace, so it gets files of its own to write to instead.
mkdir -p "$run/sysctl"
for key in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops \
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes; do
  file="$run/sysctl/${key//\//.}"
  cat "/proc/sys/$key" >"$file"
  mount --bind "$file" "/proc/sys/$key"
done

"$@"
