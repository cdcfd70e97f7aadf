#!/usr/bin/env bash
# Quickstart: build twinset, bring up a 3-node local cluster (separate processes on
# loopback), run the guide's DaemonSet (deploy/examples/daemonset.yaml) with the
# guide's commands, then tear everything down. Exits non-zero if any step fails.
#
# Environment (all optional):
#   TWINSET_BIN       use this binary instead of building target/release/twinset
#   TWINSET_DATA_DIR  data dir of the local cluster (default: twinset up's own default)
#   TWINSET_PORT      control plane port (default: 6443)
#   QUICKSTART_TIMEOUT seconds to wait for the pods (default: 60)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if [[ -n "${TWINSET_BIN:-}" ]]; then
  twinset="$TWINSET_BIN"
else
  echo "==> cargo build --release -p twinset"
  cargo build --release -p twinset
  target_dir="${CARGO_TARGET_DIR:-$repo/target}"
  [[ "$target_dir" = /* ]] || target_dir="$repo/$target_dir"
  twinset="$target_dir/release/twinset"
fi
[[ -x "$twinset" ]] || { echo "quickstart: no twinset binary at $twinset" >&2; exit 1; }

up_args=(--nodes 3)
down_args=()
if [[ -n "${TWINSET_DATA_DIR:-}" ]]; then
  up_args+=(--data-dir "$TWINSET_DATA_DIR")
  down_args+=(--data-dir "$TWINSET_DATA_DIR")
fi
if [[ -n "${TWINSET_PORT:-}" ]]; then
  up_args+=(--port "$TWINSET_PORT")
fi
timeout_s="${QUICKSTART_TIMEOUT:-60}"

# Show each command as the guide prints it (with twinset in place of kubectl), then run it.
run() {
  printf '\n$ twinset %s\n' "$*"
  "$twinset" "$@"
}

# Polls "$@" (a shell function or command) until it succeeds, for at most $timeout_s seconds.
wait_until() {
  local what="$1"; shift
  local deadline=$((SECONDS + timeout_s))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      echo "quickstart: timed out after ${timeout_s}s waiting for $what" >&2
      return 1
    fi
    sleep 0.2
  done
}

cluster_up=0
cleanup() {
  local rc=$?
  if ((cluster_up)); then
    echo
    echo "==> twinset down"
    "$twinset" down "${down_args[@]}" || rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT

echo "==> twinset up -d ${up_args[*]}"
cluster_up=1
"$twinset" up -d "${up_args[@]}"

run get nodes
run apply -f deploy/examples/daemonset.yaml

monitors_ready() {
  local table
  table="$("$twinset" get ds node-monitor -n kube-system 2>/dev/null)" || return 1
  # NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE
  awk 'NR == 2 && $2 == 3 && $3 == 3 && $4 == 3 && $6 == 3 { ok = 1 } END { exit !ok }' <<<"$table"
}
wait_until "3 node-monitor pods to be ready" monitors_ready

# The guide's commands.
run get ds -A
run describe ds node-monitor -n kube-system
run get pods -o wide -n kube-system

pod_names="$("$twinset" get pods -n kube-system -o name)"
first_pod="$(grep -m 1 '^pod/' <<<"$pod_names" || true)"
first_pod="${first_pod#pod/}"
[[ -n "$first_pod" ]] || { echo "quickstart: no node-monitor pod found" >&2; exit 1; }
monitor_logged() {
  [[ -n "$("$twinset" logs "$first_pod" -n kube-system 2>/dev/null)" ]]
}
wait_until "the node monitor to log" monitor_logged
run logs "$first_pod" -n kube-system

run delete ds node-monitor -n kube-system
monitors_gone() {
  local names
  names="$("$twinset" get pods -n kube-system -o name 2>/dev/null)" || return 1
  ! grep -q '^pod/' <<<"$names"
}
wait_until "the node-monitor pods to be removed" monitors_gone
run get pods -o wide -n kube-system

echo
echo "==> twinset down"
cluster_up=0
"$twinset" down "${down_args[@]}"
echo
echo "quickstart: OK"
