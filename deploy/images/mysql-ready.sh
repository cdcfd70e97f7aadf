#!/bin/sh
# The image table's readiness probe of `mysql:8`: exit 0 once this container's MariaDB
# answers (see mysql.sh). The agent runs it with the container's environment and, when
# the pod is isolated, in its mount namespace.
#
# It pings through the server's unix socket in the pod's own data directory, not
# POD_IP:3306: pod IPs are loopback addresses any process on the machine can take, so
# a TCP answer there may come from another server (two local clusters sharing a pod
# range), while the socket is this server's. mariadbd binds its TCP port before the
# socket and exits if it cannot, so an answer here also means POD_IP:3306 answers.
# `mariadb-admin ping` does a real protocol handshake (a bare TCP connect makes
# MariaDB log an "Aborted connection" warning every time) and exits 0 once the server
# answers, even when the login is refused.
set -eu
datadir=${TWINSET_MOUNT_VAR_LIB_MYSQL:-}
if [ -z "$datadir" ]; then
    echo "no volume is mounted at /var/lib/mysql" >&2
    exit 1
fi
. "$(dirname "$0")/mysql-socket.sh"
MYSQL_PWD="${MYSQL_ROOT_PASSWORD:-}" exec mariadb-admin ping --socket="$socket" -u root --connect-timeout=1
