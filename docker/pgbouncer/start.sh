#!/bin/sh
# The compose service's entry point: PgBouncer's configuration from the environment (the
# database password never lands in the image or the repository), then PgBouncer itself.
set -eu
conf=/tmp/pgbouncer
mkdir -p "$conf"
umask 077
printf '"%s" "%s"\n' "$HPO_DB_USER" "$HPO_DB_PASSWORD" > "$conf/users.txt"
cat > "$conf/pgbouncer.ini" <<INI
[databases]
$HPO_DB_NAME = host=$HPO_DB_SERVER port=5432 dbname=$HPO_DB_NAME
[pgbouncer]
%include /etc/pgbouncer/pool.ini
listen_addr = 0.0.0.0
listen_port = 6432
auth_type = scram-sha-256
auth_file = $conf/users.txt
unix_socket_dir =
INI
exec pgbouncer "$conf/pgbouncer.ini"
