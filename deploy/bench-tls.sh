#!/usr/bin/env bash
# Two builds alternated on fresh 3-node local clusters (for BENCHMARKS.md "TLS against the
# last plain-text build"): per round and binary, `bench daemonset --runs 10` and
# `bench writes --clients 1,16 --duration 4s --watchers 0`.
# Usage: deploy/bench-tls.sh BASELINE_BIN CANDIDATE_BIN [rounds]   (default 3 rounds).
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
[[ $# -ge 2 ]] || { echo "usage: $0 BASELINE_BIN CANDIDATE_BIN [rounds]" >&2; exit 2; }
export TWINSET_IMAGE_TABLE="$repo/deploy/images.yaml"
for r in $(seq 1 "${3:-3}"); do
  for bin in "$1" "$2"; do
    work="$(mktemp -d)"; data="$work/cluster"; export HOME="$work/home"; mkdir -p "$HOME"
    echo "### round $r: $bin"
    "$bin" up -d --nodes 3 --data-dir "$data" --port 17443 >"$work/up.log" 2>&1 || { cat "$work/up.log"; exit 1; }
    "$bin" bench daemonset --runs 10 -f deploy/examples/daemonset.yaml 2>&1 | tail -n 1
    "$bin" bench writes --clients 1,16 --duration 4s --watchers 0 2>&1 | grep -E "none|clients"
    "$bin" down --data-dir "$data" >/dev/null 2>&1
    rm -rf "$work"
  done
done
