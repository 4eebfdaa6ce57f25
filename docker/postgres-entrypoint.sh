#!/bin/bash
# First start: initdb with POSTGRES_PASSWORD for user postgres (password login over
# TCP), create POSTGRES_DB; then run the command (`postgres -c ...`) on $PGDATA.
set -euo pipefail
if [[ ! -s $PGDATA/PG_VERSION ]]; then
    : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" -U postgres -E UTF8 --auth-local=trust --auth-host=scram-sha-256 \
        --pwfile="$pwfile" >/dev/null
    rm -f "$pwfile"
    printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
    if [[ -n ${POSTGRES_DB:-} && $POSTGRES_DB != postgres ]]; then
        echo "CREATE DATABASE \"$POSTGRES_DB\"" | postgres --single -D "$PGDATA" postgres >/dev/null
    fi
fi
if [[ ${1:-} == postgres ]]; then
    shift
    exec postgres -D "$PGDATA" "$@"
fi
exec "$@"
