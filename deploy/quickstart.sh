#!/usr/bin/env bash
# Quickstart: build twinset, bring up a 3-node local cluster (separate processes on
# loopback), run the guide's DaemonSet (deploy/examples/daemonset.yaml) and then its
# StatefulSet (deploy/examples/statefulset.yaml: three MariaDB replicas standing in for
# mysql:8) with the guide's commands, then tear everything down. Exits non-zero if any
# step fails. Installs Debian's mariadb-server first when mariadbd is missing, and make
# (jemalloc's build needs it) when it is missing.
#
# Environment (all optional):
#   TWINSET_BIN        use this binary instead of building target/release/twinset
#   TWINSET_DATA_DIR   data dir of the local cluster (default: twinset up's own default)
#   TWINSET_PORT       control plane port (default: 6443)
#   TWINSET_DNS_LISTEN address of the cluster DNS server (default: twinset up's own)
#   QUICKSTART_TIMEOUT seconds to wait for the pods (default: 60)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

sudo=""
if [[ "$(id -u)" != 0 ]]; then
  sudo="sudo"
fi
# apt-get install PACKAGE... (once an update has run).
apt_updated=""
apt_install() {
  echo "==> apt-get install $*"
  if [[ -z "$apt_updated" ]]; then
    $sudo apt-get update
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "$@"
}

if [[ -n "${TWINSET_BIN:-}" ]]; then
  twinset="$TWINSET_BIN"
else
  command -v make >/dev/null 2>&1 || apt_install make
  echo "==> cargo build --release -p twinset"
  cargo build --release -p twinset
  target_dir="${CARGO_TARGET_DIR:-$repo/target}"
  [[ "$target_dir" = /* ]] || target_dir="$repo/$target_dir"
  twinset="$target_dir/release/twinset"
fi
[[ -x "$twinset" ]] || { echo "quickstart: no twinset binary at $twinset" >&2; exit 1; }

# The guide's mysql:8 runs as MariaDB (deploy/images.yaml): install it where it is missing.
if ! command -v mariadbd >/dev/null 2>&1 && [[ ! -x /usr/sbin/mariadbd ]]; then
  apt_install mariadb-server
fi

up_args=(--nodes 3)
down_args=()
if [[ -n "${TWINSET_DATA_DIR:-}" ]]; then
  up_args+=(--data-dir "$TWINSET_DATA_DIR")
  down_args+=(--data-dir "$TWINSET_DATA_DIR")
fi
if [[ -n "${TWINSET_PORT:-}" ]]; then
  up_args+=(--port "$TWINSET_PORT")
fi
if [[ -n "${TWINSET_DNS_LISTEN:-}" ]]; then
  up_args+=(--dns-listen "$TWINSET_DNS_LISTEN")
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

# The guide's StatefulSet: mysql-db-0, -1 and -2 start one after the other.
run apply -f deploy/examples/statefulset.yaml

# Polls `get sts mysql-db` until READY shows $1/$1.
mysql_ready() {
  local table
  table="$("$twinset" get sts mysql-db -n database 2>/dev/null)" || return 1
  # NAME READY AGE
  awk -v want="$1/$1" 'NR == 2 && $2 == want { ok = 1 } END { exit !ok }' <<<"$table"
}
wait_until "3 mysql-db replicas to be ready" mysql_ready 3

# The guide's commands.
run get sts -A
run describe sts mysql-db -n database
run scale sts mysql-db --replicas=4 -n database
printf '\n$ twinset %s\n' "rollout status sts/mysql-db -n database"
timeout "$timeout_s" "$twinset" rollout status sts/mysql-db -n database
run get pods -o wide -n database

# Each replica is a real database server at its own pod IP.
db_ip="$("$twinset" get pod mysql-db-0 -n database -o json | sed -n 's/.*"podIP": *"\([^"]*\)".*/\1/p' | head -n 1)"
[[ -n "$db_ip" ]] || { echo "quickstart: mysql-db-0 has no pod IP" >&2; exit 1; }
# Ready means "its process runs" (the guide sets no readiness probe); the server may
# still be initialising its data directory, so wait until it answers.
db_answers() {
  mariadb -h "$db_ip" -P 3306 -u root --connect-timeout=2 -e 'select 1' >/dev/null 2>&1
}
wait_until "MariaDB in mysql-db-0 to answer at $db_ip:3306" db_answers
printf '\n$ mariadb -h %s -P 3306 -u root -e %s\n' "$db_ip" "'select @@hostname, version()'"
mariadb -h "$db_ip" -P 3306 -u root --connect-timeout=10 -e 'select @@hostname, version()'

# Stable network identity: the cluster DNS answers each replica's name with its IP.
dns_addr="$(cat "${TWINSET_DATA_DIR:-$HOME/.twinset/cluster}/control-plane/dns-address" 2>/dev/null || true)"
if [[ -n "$dns_addr" ]] && command -v dig >/dev/null 2>&1; then
  dns_ip="${dns_addr%:*}"
  dns_port="${dns_addr##*:}"
  db_name=mysql-db-0.mysql.database.svc.cluster.local
  dns_answers() {
    [[ "$(dig @"$dns_ip" -p "$dns_port" +short +time=2 +tries=1 "$db_name" 2>/dev/null)" == "$db_ip" ]]
  }
  wait_until "$db_name to resolve to $db_ip" dns_answers
  printf '\n$ dig @%s -p %s +short %s\n' "$dns_ip" "$dns_port" "$db_name"
  dig @"$dns_ip" -p "$dns_port" +short "$db_name"
  printf '\n$ dig @%s -p %s +short %s\n' "$dns_ip" "$dns_port" mysql.database.svc.cluster.local
  dig @"$dns_ip" -p "$dns_port" +short mysql.database.svc.cluster.local
elif [[ -n "$dns_addr" ]]; then
  echo
  echo "(the cluster DNS answers at $dns_addr; install dnsutils to query it with dig)"
fi

echo
echo "==> twinset down"
cluster_up=0
"$twinset" down "${down_args[@]}"
echo
echo "quickstart: OK"
