#!/bin/sh
# The compose service's entry point: PgBouncer's configuration from the environment (the
# database password never lands in the image or the repository), then PgBouncer itself, stopped
# only once its clients have left.
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

# SIGTERM (`docker compose stop` or `down`) reaches PgBouncer and the workers at once. PgBouncer
# 1.18 (Debian 12, this image) ends every client at once on SIGTERM, and a worker's hand-back,
# which goes through it, would be lost (the worker then killed after its grace). So, as PgBouncer
# 1.23 does by itself: wait for the clients to leave (up to PGBOUNCER_DRAIN_S, default 25 s; the
# compose file's stop grace is longer), then the safe shutdown (SIGINT).
clients() {
  # Established connections to the listening port, from the kernel's table (no tools needed).
  port_hex=$(printf '%04X' "${PGBOUNCER_PORT:-6432}")
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null \
    | awk -v port=":$port_hex" '$4 == "01" && substr($2, length($2) - 4) == port' | wc -l
}
drain() {
  deadline=$(( $(date +%s) + ${PGBOUNCER_DRAIN_S:-25} ))
  while [ "$(clients)" -gt 0 ] && [ "$(date +%s)" -lt "$deadline" ]; do
    sleep 0.2
  done
  kill -INT "$pid"
}
pgbouncer "$conf/pgbouncer.ini" &
pid=$!
trap drain TERM
trap 'kill -INT "$pid"' INT
# `wait` returns when a trapped signal arrives; PgBouncer's own status comes once it has exited.
while kill -0 "$pid" 2>/dev/null; do
  wait "$pid" && status=0 || status=$?
done
exit "$status"
