#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on loopback for the study storage tests and export its URL as
# SCALETUNE_TEST_POSTGRES_URL. Meant to be `source`d by .ci/run (it must not change the caller's shell
# options), and also runnable on its own (`bash .ci/postgres.sh` prints the URL).
# Installs PostgreSQL from the Debian packages when `initdb` is missing (needs root and apt).

_st_pg_start() {
  local bindir port datadir user=scaletune password=scaletune db=scaletune_test
  bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    echo "postgres.sh: installing PostgreSQL (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2 || return 1
    bindir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  fi
  port="${SCALETUNE_PG_PORT:-55432}"
  datadir="${SCALETUNE_PG_DATA:-/tmp/scaletune-pg-$port}"
  # The server refuses to run as root: run it as the `postgres` system user when we are root.
  local as=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    as=(runuser -u postgres --)
  fi
  if ! "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then
    rm -rf "$datadir" && mkdir -p "$datadir"
    [ "$(id -u)" = 0 ] && chown postgres "$datadir"
    "${as[@]}" "$bindir/initdb" -D "$datadir" -U postgres --auth=trust -E UTF8 >/dev/null || return 1
    "${as[@]}" "$bindir/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $datadir -c max_connections=200" start >/dev/null || return 1
  fi
  "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -q -v ON_ERROR_STOP=1 >/dev/null <<SQL || return 1
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$user') THEN
    CREATE ROLE $user LOGIN PASSWORD '$password';
  END IF;
END \$\$;
SQL
  if ! "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1; then
    "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres -O "$user" "$db" || return 1
  fi
  export SCALETUNE_TEST_POSTGRES_URL="postgresql://$user:$password@127.0.0.1:$port/$db"
  echo "$SCALETUNE_TEST_POSTGRES_URL"
}

_st_pg_start || echo "postgres.sh: could not start PostgreSQL; the postgres tests will be skipped" >&2
unset -f _st_pg_start
