#!/bin/sh
# The image table's `mysql:8`: MariaDB (Debian's mariadb-server) as the guide's MySQL.
#
# The data directory is the volume mounted at /var/lib/mysql. The agent gives its
# path in TWINSET_MOUNT_VAR_LIB_MYSQL: /var/lib/mysql itself when the pod is isolated
# (the claim is bind-mounted there in the pod's mount namespace), else the claim's
# folder on the node. It is initialised only when empty, so a restarted or recreated
# replica keeps its data. Then mariadbd replaces this shell (exec), listening on
# $POD_IP:3306, so SIGTERM reaches it and it shuts down cleanly.
#
# As the mysql image: root has no password unless MYSQL_ROOT_PASSWORD is set, and
# MYSQL_DATABASE names a database to create on first start. Container args are
# passed on to mariadbd (e.g. ["--max-connections=50"]).
set -eu

say() { echo "mysql: $*" >&2; }

datadir=${TWINSET_MOUNT_VAR_LIB_MYSQL:-}
if [ -z "$datadir" ]; then
    say "no volume is mounted at /var/lib/mysql; give the container one (a persistentVolumeClaim or an emptyDir)"
    exit 1
fi
for prog in mariadbd mariadb-install-db; do
    if ! command -v "$prog" >/dev/null 2>&1; then
        say "$prog not found: install Debian's mariadb-server (apt-get install mariadb-server)"
        exit 127
    fi
done

user_opt=
if [ "$(id -u)" = 0 ]; then user_opt=--user=root; fi
# Small InnoDB sizes: each replica starts in well under a second and takes ~26 MB.
innodb="--innodb-buffer-pool-size=16M --innodb-log-file-size=8M"
# The server's unix socket ($socket), where the readiness probe (mysql-ready.sh) finds it.
. "$(dirname "$0")/mysql-socket.sh"

# Temporary tables go to the pod's own TMPDIR (the agent gives each pod one): replicas
# on one machine share /tmp, and concurrent initialisations must not meet there.
tmpdir="${TMPDIR:-/tmp}"
mkdir -p "$tmpdir"

sql_string() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g"; }

initialise() {
    say "initialising $datadir"
    : >"$datadir/.twinset-initializing"
    # shellcheck disable=SC2086
    mariadb-install-db --no-defaults --datadir="$datadir" $user_opt \
        --auth-root-authentication-method=normal --skip-test-db $innodb --tmpdir="$tmpdir" >&2
    if [ -n "${MYSQL_ROOT_PASSWORD:-}" ]; then
        pw=$(sql_string "$MYSQL_ROOT_PASSWORD")
        users="DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1', 'root'@'$(hostname)';
ALTER USER 'root'@'localhost' IDENTIFIED BY '$pw';
CREATE USER 'root'@'%' IDENTIFIED BY '$pw';"
    else
        users="CREATE USER 'root'@'%' IDENTIFIED BY '';"
    fi
    db=
    if [ -n "${MYSQL_DATABASE:-}" ]; then
        db="CREATE DATABASE IF NOT EXISTS \`$(printf '%s' "$MYSQL_DATABASE" | sed 's/`/``/g')\`;"
    fi
    # shellcheck disable=SC2086
    mariadbd --no-defaults --bootstrap --datadir="$datadir" $user_opt $innodb \
        --skip-networking --socket="$socket" --tmpdir="$tmpdir" --log-error="$datadir/bootstrap.err" >&2 <<SQL
FLUSH PRIVILEGES;
$users
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
$db
SQL
    rm -f "$datadir/.twinset-initializing" "$datadir/bootstrap.err"
    say "initialised"
}

mkdir -p "$datadir"
if [ -e "$datadir/.twinset-initializing" ]; then
    say "an earlier initialisation of $datadir did not finish; starting it again"
    rm -rf "${datadir:?}"/* "$datadir"/.[!.]* "$datadir"/..?* 2>/dev/null || true
fi
if [ -z "$(ls -A "$datadir")" ]; then
    initialise
fi

# shellcheck disable=SC2086
exec mariadbd --no-defaults --datadir="$datadir" $user_opt $innodb \
    --bind-address="${POD_IP:-127.0.0.1}" --port="${MYSQL_TCP_PORT:-3306}" \
    --socket="$socket" --pid-file="$datadir/mariadbd.pid" --tmpdir="$tmpdir" \
    --skip-name-resolve "$@"
