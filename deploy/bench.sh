#!/usr/bin/env bash
# Benchmarks for BENCHMARKS.md, on a fresh 3-node local cluster:
#   1. time from Apply of deploy/examples/daemonset.yaml to all 3 daemon pods Running and
#      Ready, seen on the Watch stream (`twinset bench daemonset`), median and max of N runs;
#   2. RSS of the idle control plane and of one idle agent (VmRSS, after the runs and a
#      short settle, with no pods left).
# Usage: deploy/bench.sh [runs]   (default 10). Builds the release binary unless TWINSET_BIN
# is set. TWINSET_PORT picks the port (default 16443). Prints a Markdown table.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
runs="${1:-10}"

if [[ -n "${TWINSET_BIN:-}" ]]; then
  twinset="$TWINSET_BIN"
else
  cargo build --release -p twinset >&2
  target_dir="${CARGO_TARGET_DIR:-$repo/target}"
  [[ "$target_dir" = /* ]] || target_dir="$repo/$target_dir"
  twinset="$target_dir/release/twinset"
fi

work="$(mktemp -d)"
data="$work/cluster"
export HOME="$work/home"
mkdir -p "$HOME"
port="${TWINSET_PORT:-16443}"

cleanup() {
  "$twinset" down --data-dir "$data" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

"$twinset" up -d --nodes 3 --data-dir "$data" --port "$port" >&2

# Latency through the Watch stream (not polling): see cli/src/commands/bench.rs.
"$twinset" bench daemonset --runs "$runs" -f deploy/examples/daemonset.yaml | tee "$work/bench.txt" >&2
summary="$(tail -n 1 "$work/bench.txt")"
median="$(sed -E 's/.*median ([0-9.]+) ms.*/\1/' <<<"$summary")"
max="$(sed -E 's/.*max ([0-9.]+) ms.*/\1/' <<<"$summary")"
n="$runs"

# Idle RSS: let the cluster settle (heartbeats only), then read VmRSS.
sleep 3
rss_of() {
  local pattern="$1" pid
  pid="$(pgrep -f -- "$pattern" | head -n 1)"
  [[ -n "$pid" ]] || { echo "?"; return; }
  awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status"
}
cp_rss="$(rss_of "control-plane --data-dir $data")"
agent_rss="$(rss_of "agent .*--data-dir $data/node1")"

echo "| figure | value |"
echo "|---|---|"
echo "| apply -> 3 daemon pods Running+Ready, median of $n | ${median} ms |"
echo "| apply -> 3 daemon pods Running+Ready, max of $n | ${max} ms |"
echo "| idle control plane RSS | ${cp_rss} MiB |"
echo "| idle agent RSS (node1) | ${agent_rss} MiB |"
echo
echo "binary: $twinset ($("$twinset" --version 2>/dev/null || echo unknown version)); $(nproc) cores"
