#!/bin/sh
# The stand-in postgres:16 image's entry point: the part of the official image's entry point that
# docker-compose.yml relies on. On an empty data folder it makes a UTF-8 cluster (as the official
# image does) whose superuser is POSTGRES_USER with POSTGRES_PASSWORD, and the database
# POSTGRES_DB; then it runs the server as the postgres user, as the container's main process,
# listening on every address of the container with password authentication (scram-sha-256) from
# the network.
set -eu
bin=/usr/lib/postgresql/15/bin
data=${PGDATA:-/var/lib/postgresql/data}
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

if [ "${1:-}" != postgres ]; then
  exec "$@"
fi
shift
mkdir -p "$data" /var/run/postgresql
chown postgres:postgres "$data" /var/run/postgresql
chmod 700 "$data"
if [ ! -s "$data/PG_VERSION" ]; then
  password_file=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set}" > "$password_file"
  chown postgres "$password_file"
  as_postgres "$bin/initdb" --pgdata="$data" --username="${POSTGRES_USER:-postgres}" \
    --pwfile="$password_file" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$password_file"
  echo "host all all all scram-sha-256" >> "$data/pg_hba.conf"
  as_postgres "$bin/pg_ctl" --pgdata="$data" --wait --silent -o "-c listen_addresses=''" start
  database=${POSTGRES_DB:-${POSTGRES_USER:-postgres}}
  if [ "$database" != postgres ]; then
    as_postgres "$bin/psql" --quiet --username="${POSTGRES_USER:-postgres}" --dbname=postgres \
      --command="CREATE DATABASE \"$database\""
  fi
  as_postgres "$bin/pg_ctl" --pgdata="$data" --wait --silent --mode=fast stop
  echo "stand-in postgres: made the cluster in $data"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \
  "$bin/postgres" -D "$data" -c listen_addresses='*' "$@"
