#!/usr/bin/env bash
# Runs a command inside a private network namespace made for this run, without sudo:
# `unshare -rn` creates a user namespace (mapping you to root inside it) and a network
# namespace owned by it. Inside, lo is brought up and given 10.244.0.1/16, so every
# 10.244.x.y is a local "pod" address that only this run can reach. Nothing inside can reach
# the outside network, so build everything before entering (cargo --offline).
set -euo pipefail

if [[ "${PORTICO_TEST_NETNS:-}" != 1 ]]; then
  if ! unshare -rn true 2>/dev/null; then
    echo "tests/netns.sh: cannot create a user+network namespace (unshare -rn failed)." >&2
    echo "  Enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1," >&2
    echo "  or on Ubuntu: sysctl kernel.apparmor_restrict_unprivileged_userns=0), or run as root." >&2
    exit 1
  fi
  exec unshare -rn --kill-child env PORTICO_TEST_NETNS=1 "$0" "$@"
fi

ip link set lo up
ip addr add 10.244.0.1/16 dev lo
exec "$@"
