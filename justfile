# Portico's developer commands. Thin recipes over cargo and the scripts in tests/.
# `./dev <recipe>` installs `just` first when it is missing.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Build (or reuse) the test control plane: kube-apiserver, etcd, kube-controller-manager.
control-plane:
    @bash tests/kube/build.sh >/dev/null

# Build (or reuse) helm from its Go module.
helm:
    @bash tests/helm/build.sh >/dev/null

# Build every binary and test executable (needs the network the first time).
build:
    @echo "==> cargo build (the first build compiles ~300 crates; later ones are incremental)"
    cargo build --workspace --bins
    cargo test --workspace --no-run

# Run all tests: unit, control plane (real apiserver), helm, and traffic end to end.
# Everything runs inside a private network namespace made for this run (no sudo).
test *ARGS: control-plane helm build
    @echo "==> running the tests inside a private network namespace (tests/netns.sh)"
    CARGO_NET_OFFLINE=true tests/netns.sh cargo test --workspace {{ARGS}}

# A real kubelet, kube-scheduler, kube-proxy, containerd and runc with the CNI bridge; the
# chart, the operator, a team's proxies and backends as real pods from images built here;
# traffic to pod IPs and a NodePort; a rolling restart under load. Runs in network, mount and
# PID namespaces of its own and removes everything when it ends.
# The node tier (needs root; fails when not root): about a minute once built.
test-node *ARGS:
    @bash tests/node/run.sh {{ARGS}}

# On a real node when it can (root, containerd): the node tier's run, pods under a kubelet;
# otherwise a local control plane with the pods as local processes (two teams, isolation,
# status). Everything runs in private namespaces and stops when it ends.
# The demo: helm install, IngressControllers, proxies, routed traffic; says which mode it uses.
demo: control-plane helm
    #!/usr/bin/env bash
    set -euo pipefail
    if reason=$(bash tests/node/run.sh --check 2>&1); then
      echo "==> demo mode: a real node (kubelet, containerd, kube-proxy): the chart, the operator, a team's proxies and backends run as pods (tests/node/run.sh)"
      exec bash tests/node/run.sh
    fi
    echo "==> demo mode: local processes standing in for a kubelet (no real node here: ${reason%%$'\n'*})"
    echo "==> cargo build --workspace --bins (the first build compiles ~300 crates)"
    cargo build --workspace --bins
    exec tests/netns.sh target/debug/portico-demo

# Start a local control plane in the background and print how to use it.
cluster: control-plane
    @cargo build -q -p portico-tests --bin portico-cluster
    @bash tests/cluster.sh up

# Stop the control plane started by `just cluster`.
cluster-down:
    @bash tests/cluster.sh down

# Regenerate crds/ from the Rust types (and the chart's copy).
generate:
    cargo run -q -p portico-operator --bin crdgen

# Rewrite every golden file: the operator's builders, the chart's renderings (and its copy
# of the CRDs), the annotation table of the migration guide. Review the diff afterwards.
golden: helm
    UPDATE_GOLDEN=1 cargo test -q -p portico-operator --lib golden
    UPDATE_GOLDEN=1 cargo test -q -p portico-tests --test helm_chart
    UPDATE_GOLDEN=1 cargo test -q -p portico-ingress the_migration_guide_says_what_the_code_does
    git status --short -- operator/src/resources tests/helm charts/portico/crds docs

# Formatting and lints.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Not part of `just test`. Installs nginx, HAProxy, wrk and h2load when missing and builds Traefik
# from its Go module (bench/traefik/build.sh, cached); about 20 minutes.
# Extra arguments go to `portico-bench run` (target/release/portico-bench run --help).
# Benchmarks against nginx, HAProxy and Traefik, churn, 10k Ingresses: target/bench/results.md.
bench *ARGS: control-plane
    @bash bench/bench.sh {{ARGS}}
