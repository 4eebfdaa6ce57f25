#!/bin/bash
# The read replica of docker-compose.yml (`postgres-replica`): a hot standby streaming
# from the primary (`postgres`). At its first start (empty data directory) it takes a
# base backup of the primary with `pg_basebackup -R`, which also writes standby.signal
# and the connection to stream from; every start then runs `postgres` on its own data
# with the arguments given (`-c ...`), replaying the primary's WAL as it comes.
#
# Works in the official postgres image (which starts as root: the data directory is
# handed to the postgres user, as its own entrypoint does, with gosu) and in the local
# one of docker/postgres.Dockerfile (already the postgres user). Both put the server
# binaries (pg_basebackup, pg_isready, postgres) under /usr/lib/postgresql/<v>/bin.
#
# The password is the primary's (POSTGRES_PASSWORD), given to libpq as PGPASSWORD;
# `-R` records the connection in the replica's postgresql.auto.conf.
set -euo pipefail
: "${PGDATA:=/var/lib/postgresql/data}"
: "${PRIMARY_HOST:=postgres}"
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (the postgres password of the primary)}"
export PGDATA PGPASSWORD=$POSTGRES_PASSWORD

if [[ $(id -u) == 0 ]]; then
    mkdir -p "$PGDATA"
    chown -R postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    exec gosu postgres bash "${BASH_SOURCE[0]}" "$@"
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
export PATH=$bin:$PATH

if [[ ! -s $PGDATA/PG_VERSION ]]; then
    until pg_isready -q -h "$PRIMARY_HOST" -U postgres; do
        echo "postgres-replica: waiting for $PRIMARY_HOST" >&2
        sleep 1
    done
    # A backup interrupted by an earlier first start leaves files but no PG_VERSION.
    find "$PGDATA" -mindepth 1 -delete
    echo "postgres-replica: base backup of $PRIMARY_HOST" >&2
    pg_basebackup -h "$PRIMARY_HOST" -U postgres -D "$PGDATA" -X stream -R -c fast
fi
exec postgres -D "$PGDATA" "$@"
