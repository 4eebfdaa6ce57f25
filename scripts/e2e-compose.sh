#!/usr/bin/env bash
# make e2e-compose: the docker-compose deployment from nothing to torn down.
#
#   1. wipe any previous stack (containers and volumes), build the images (blobs in
#      the stack's S3 server; HS_BLOBS=fs for the shared volume)
#      (scripts/compose.sh: local ones where no registry is reachable), start it, wait
#      until every /readyz answers;
#   2. the smoke scenario and the fault drills through the gateway
#      (services/homeserver/tests/it/compose_e2e.rs), which print a table;
#   3. `homeserver rebuild`: the whole log replayed into a fresh schema must equal the
#      live projections after the drills;
#   4. tear everything down (also on failure).
#
# Signup is open in this throwaway stack. Takes about 5 minutes; not part of CI.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# Blobs in S3 (docker-compose.s3.yml) unless HS_BLOBS=fs: the object-store drill
# needs it, and the shared-volume store is what `make test` covers anyway.
export COMPOSE_PROJECT_NAME=pubky-homeserver HOMESERVER_SIGNUP_MODE=open HS_BLOBS=${HS_BLOBS:-s3}
COMPOSE="scripts/compose.sh run"

say() { printf 'e2e-compose: %s\n' "$*" >&2; }

scripts/compose.sh wipe >/dev/null 2>&1 || true
trap 'say "tearing down"; scripts/compose.sh wipe >/dev/null 2>&1 || true' EXIT

started=$SECONDS
scripts/compose.sh up
say "stack up from nothing in $((SECONDS - started)) s: $($COMPOSE ps --services | wc -l) services"
$COMPOSE ps

# The test binary is built before the clock of the drills starts.
cargo test -p homeserver --test it --no-run >/dev/null 2>&1
cargo test -p homeserver --test it -- --ignored --exact compose_e2e::compose_e2e --nocapture 2>&1 |
    grep -v -e '^running' -e '^$' -e 'has been running' -e '^test result' -e 'Finished' -e 'Running'

say "rebuild: replaying the log into a fresh schema and comparing with the projections"
$COMPOSE run --rm --no-deps -T -e RUST_LOG=error projector rebuild
say "passed in $((SECONDS - started)) s"
