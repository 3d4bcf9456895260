#!/bin/sh
# The compose service's entry point: PgBouncer's configuration from the environment (the
# database password never lands in the image or the repository), then PgBouncer itself.
# HPO_DB_USER, HPO_DB_PASSWORD, HPO_DB_NAME and HPO_DB_SERVER come from docker-compose.yml; the
# rest have the container's defaults (tests/test_pooling.py runs this script on the host).
set -eu
conf=${PGBOUNCER_CONF_DIR:-/tmp/pgbouncer}
mkdir -p "$conf"
umask 077
printf '"%s" "%s"\n' "$HPO_DB_USER" "$HPO_DB_PASSWORD" > "$conf/users.txt"
cat > "$conf/pgbouncer.ini" <<INI
[databases]
$HPO_DB_NAME = host=$HPO_DB_SERVER port=${HPO_DB_SERVER_PORT:-5432} dbname=$HPO_DB_NAME
[pgbouncer]
%include ${PGBOUNCER_POOL_INI:-/etc/pgbouncer/pool.ini}
listen_addr = ${PGBOUNCER_LISTEN_ADDR:-0.0.0.0}
listen_port = ${PGBOUNCER_PORT:-6432}
auth_type = scram-sha-256
auth_file = $conf/users.txt
unix_socket_dir =
INI
exec pgbouncer "$conf/pgbouncer.ini"
