# shellcheck shell=sh
# Sourced by mysql.sh and mysql-ready.sh (which must agree): sets $socket, the unix
# socket of the MariaDB serving $datadir. A socket path must stay under 108 bytes; a
# long data path uses /tmp instead.
if [ "${#datadir}" -le 90 ]; then
    socket=$datadir/mysqld.sock
else
    socket=/tmp/twinset-mysqld-$(printf '%s' "$datadir" | cksum | cut -d' ' -f1).sock
fi
