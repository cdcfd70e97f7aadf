#!/usr/bin/env bash
# The pod network figures of BENCHMARKS.md, as root, all inside a network namespace made
# here (only `lo`, no route out: nothing of the host's network is touched, no packet
# leaves): `bench pod-network` (per-pod bridge setup, 200 pods × 3 runs), then per round a
# fresh 3-node local cluster in loopback mode and one in bridge mode, each running
# `bench sts-parallel --runs 3` (200 replicas, apply → all Running).
# Usage: deploy/bench-podnet.sh [BIN] [rounds]   (default target/release/twinset, 2 rounds).
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bin="$(realpath "${1:-target/release/twinset}")"
[[ "$(id -u)" == 0 ]] || { echo "$0: needs root (network namespaces)" >&2; exit 2; }
export TWINSET_IMAGE_TABLE="$repo/deploy/images.yaml"
ns="twinset-bench-$$"
ip netns add "$ns" && ip -n "$ns" link set lo up
trap 'ip netns del "$ns"' EXIT
in_ns() { nsenter --net="/run/netns/$ns" "$@"; }
echo "### bench pod-network"
in_ns "$bin" bench pod-network --runs 3
for r in $(seq 1 "${2:-2}"); do
  for mode in loopback bridge; do
    work="$(mktemp -d)"; data="$work/cluster"; export HOME="$work/home"; mkdir -p "$HOME"
    echo "### round $r: $mode"
    in_ns "$bin" up -d --nodes 3 --data-dir "$data" --port 17443 --pod-network "$mode" \
      >"$work/up.log" 2>&1 || { cat "$work/up.log"; exit 1; }
    in_ns "$bin" bench sts-parallel --runs 3 2>&1 | tail -n 2
    in_ns "$bin" down --data-dir "$data" >/dev/null 2>&1
    rm -rf "$work"
  done
done
