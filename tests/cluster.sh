#!/usr/bin/env bash
# `just cluster` / `just cluster-down`: the test control plane for a person, in the background.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
dir=$target/cluster
pidfile=$target/cluster.pid

running() { [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case ${1:-} in
up)
  if running; then
    echo "a control plane is already running (pid $(cat "$pidfile")):"
    cat "$dir/env"
    exit 0
  fi
  mkdir -p "$target"
  rm -f "$target/cluster.log"
  nohup "$target/debug/portico-cluster" up --dir "$dir" >"$target/cluster.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 600); do
    if grep -q "control plane ready" "$target/cluster.log" 2>/dev/null; then
      cat "$target/cluster.log"
      exit 0
    fi
    if ! running; then
      echo "the control plane failed to start:" >&2
      cat "$target/cluster.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "the control plane did not become ready within 60s; see $target/cluster.log" >&2
  exit 1
  ;;
down)
  if ! running; then
    echo "no control plane is running"
    rm -f "$pidfile"
    exit 0
  fi
  pid=$(cat "$pidfile")
  kill "$pid"
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  echo "control plane stopped"
  ;;
*)
  echo "usage: tests/cluster.sh up|down" >&2
  exit 2
  ;;
esac
