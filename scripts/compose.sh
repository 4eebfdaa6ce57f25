#!/usr/bin/env bash
# The split deployment of docker-compose.yml, on machines with or without an image
# registry.
#
#   scripts/compose.sh images   make the local images (see below)
#   scripts/compose.sh up       images if needed, start the stack, wait until every
#                               service with a healthcheck is healthy
#   scripts/compose.sh down     stop and remove containers and networks (data kept)
#   scripts/compose.sh wipe     the same, and the volumes (NATS, Postgres, key, blobs)
#   scripts/compose.sh run ARGS  docker-compose ARGS with the images and password above
#
# HS_IMAGES=official  the compose defaults: official nats/postgres images, the
#                     homeserver built from source by the root Dockerfile (needs a
#                     registry: docker.io for the images, crates.io for the build).
# HS_IMAGES=local     (default when docker.io does not answer) images made here:
#   hs-debian:bookworm        debootstrapped base (scripts/docker-base.sh)
#   hs-nats:<pin>             nats-server as scripts/services.sh pins it (docker/nats.Dockerfile)
#   hs-postgres:15            Debian's postgresql-15 (docker/postgres.Dockerfile)
#   pubky-homeserver:prebuilt runtime image around HS_BINARY, a release build made on
#                             the host (docker/runtime.Dockerfile); default
#                             target/release/homeserver
#   hs-s3:<moto pin>          with HS_BLOBS=s3: moto's S3 server from the wheels of the
#                             venv scripts/services.sh installs (docker/s3.Dockerfile)
#
# HS_BLOBS=s3         blobs in an S3 bucket (docker-compose.s3.yml on top of
#                     docker-compose.yml) instead of the shared volume.
# Images are rebuilt when their inputs change (docker's layer cache decides).
#
# HOMESERVER_ADMIN_PASSWORD defaults to a random one here (printed once at `up`).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
COMPOSE=${COMPOSE:-docker-compose}
if [[ ${HS_BLOBS:-fs} == s3 ]]; then
    COMPOSE="$COMPOSE -f docker-compose.yml -f docker-compose.s3.yml"
fi
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-pubky-homeserver}
BASE_IMAGE=hs-debian:bookworm
NATS_VERSION=$(sed -n 's/^NATS_SERVER_VERSION=//p' scripts/services.sh)
MOTO_VERSION=$(sed -n 's/^MOTO_VERSION=//p' scripts/services.sh)
HS_BINARY=${HS_BINARY:-$ROOT/target/release/homeserver}
CTX=$ROOT/.data/docker-context
UP_ARGS=()

say() { printf 'compose: %s\n' "$*" >&2; }
die() { printf 'compose: error: %s\n' "$*" >&2; exit 1; }

images_mode() {
    if [[ -n ${HS_IMAGES:-} ]]; then
        printf '%s\n' "$HS_IMAGES"
    elif curl -fsS -o /dev/null --max-time 3 https://registry-1.docker.io/v2/ 2>/dev/null ||
        curl -sS -o /dev/null -w '%{http_code}' --max-time 3 https://registry-1.docker.io/v2/ 2>/dev/null | grep -q 401; then
        printf 'official\n'
    else
        printf 'local\n'
    fi
}

# build IMAGE DOCKERFILE CONTEXT ARGS...
build() {
    local image=$1 file=$2 context=$3
    shift 3
    say "building $image"
    if ! docker build -t "$image" -f "$file" "$@" "$context" >"$CTX.log" 2>&1; then
        tail -n 30 "$CTX.log" >&2
        die "building $image failed"
    fi
    rm -f "$CTX.log"
}

local_images() {
    command -v docker >/dev/null || die "docker is not installed (apt-get install -y docker.io docker-compose)"
    scripts/docker-base.sh "$BASE_IMAGE"
    [[ -x $HS_BINARY ]] || die "no homeserver binary at $HS_BINARY: cargo build --release -p homeserver (or set HS_BINARY)"
    local nats_bin
    nats_bin=$(scripts/services.sh nats-bin)
    rm -rf "$CTX"
    mkdir -p "$CTX/nats" "$CTX/postgres" "$CTX/homeserver"
    cp docker/nats.Dockerfile "$nats_bin" "$CTX/nats/"
    cp docker/postgres.Dockerfile docker/postgres-entrypoint.sh "$CTX/postgres/"
    cp docker/runtime.Dockerfile "$CTX/homeserver/"
    # Without the line tables of the release profile (209 MB -> 42 MB here).
    strip -o "$CTX/homeserver/homeserver" "$HS_BINARY" 2>/dev/null || cp "$HS_BINARY" "$CTX/homeserver/homeserver"
    build "hs-nats:$NATS_VERSION" "$CTX/nats/nats.Dockerfile" "$CTX/nats" --build-arg "BASE_IMAGE=$BASE_IMAGE"
    build hs-postgres:15 "$CTX/postgres/postgres.Dockerfile" "$CTX/postgres" --build-arg "BASE_IMAGE=$BASE_IMAGE"
    build pubky-homeserver:prebuilt "$CTX/homeserver/runtime.Dockerfile" "$CTX/homeserver" --build-arg "RUNTIME_IMAGE=$BASE_IMAGE"
    if [[ ${HS_BLOBS:-fs} == s3 ]]; then
        # The exact set of packages `make test` runs moto with, as wheels for the image.
        local venv
        venv=$(scripts/services.sh moto-venv)
        mkdir -p "$CTX/s3/wheels"
        cp docker/s3.Dockerfile "$CTX/s3/"
        "$venv/bin/pip" freeze --disable-pip-version-check >"$CTX/s3/wheels/requirements.txt"
        "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
            -r "$CTX/s3/wheels/requirements.txt" -d "$CTX/s3/wheels" >&2
        build "hs-s3:$MOTO_VERSION" "$CTX/s3/s3.Dockerfile" "$CTX/s3" --build-arg "BASE_IMAGE=$BASE_IMAGE"
    fi
    rm -rf "$CTX"
}

# Exports the image names of the chosen mode for docker-compose.yml.
select_images() {
    if [[ $(images_mode) == local ]]; then
        export NATS_IMAGE=hs-nats:$NATS_VERSION POSTGRES_IMAGE=hs-postgres:15 \
            HOMESERVER_IMAGE=pubky-homeserver:prebuilt S3_IMAGE=hs-s3:$MOTO_VERSION
        # No internet, so no Mainline DHT: the gateway runs without publishing, and
        # the republisher (which needs a DHT) is not started (UP_ARGS below).
        export HOMESERVER_DHT_MAINNET=false
        UP_ARGS=(--scale republisher=0)
        return 0
    fi
    return 1
}

admin_password() {
    local file=$ROOT/.data/compose-admin-password
    if [[ -z ${HOMESERVER_ADMIN_PASSWORD:-} ]]; then
        mkdir -p "$ROOT/.data"
        [[ -s $file ]] || head -c 18 /dev/urandom | base64 >"$file"
        HOMESERVER_ADMIN_PASSWORD=$(<"$file")
        export HOMESERVER_ADMIN_PASSWORD
        say "admin API on http://127.0.0.1:6288, password in $file"
    fi
}

# Waits until no container of the project is starting or unhealthy.
wait_healthy() {
    local deadline=$((SECONDS + ${1:-180})) ids states
    while :; do
        ids=$($COMPOSE ps -q)
        states=$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' $ids)
        if ! grep -Eq ' (starting|unhealthy)$| (created|restarting)' <<<"$states" &&
            grep -q 'gateway_1 running healthy' <<<"$states" &&
            grep -q 'admin-api_1 running healthy' <<<"$states"; then
            return 0
        fi
        if ((SECONDS > deadline)); then
            printf '%s\n' "$states" >&2
            die "the stack did not become healthy"
        fi
        sleep 1
    done
}

case ${1:-} in
images)
    local_images
    ;;
up)
    admin_password
    if select_images; then
        local_images
        $COMPOSE up -d --no-build "${UP_ARGS[@]}"
    else
        $COMPOSE up -d --build
    fi
    wait_healthy
    say "up: gateway http://127.0.0.1:6286 (Pubky TLS on 6287)"
    ;;
down | wipe)
    select_images || true
    volumes=()
    [[ $1 == wipe ]] && volumes=(-v)
    HOMESERVER_ADMIN_PASSWORD=${HOMESERVER_ADMIN_PASSWORD:-unused} $COMPOSE down "${volumes[@]}" --remove-orphans
    ;;
run)
    shift
    select_images || true
    admin_password 2>/dev/null
    $COMPOSE "$@"
    ;;
*)
    say "usage: $0 images|up|down|wipe|run ARGS"
    exit 2
    ;;
esac
