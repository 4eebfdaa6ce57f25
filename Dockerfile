# syntax=docker/dockerfile:1
# One image for every service: `homeserver <subcommand>` (see docker-compose.yml),
# built from source. The base images are build arguments, official ones by default:
#
#   BUILD_IMAGE    rust:1.95-bookworm     (the toolchain; any bookworm with cargo)
#   RUNTIME_IMAGE  debian:bookworm-slim   (e.g. the local hs-debian:bookworm made by
#                                          scripts/docker-base.sh)
#
# Where no Rust toolchain image can be pulled (the dev machines), scripts/compose.sh
# builds docker/runtime.Dockerfile around a binary built on the host instead: the
# same runtime stage as below (keep the two alike).

ARG BUILD_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- build -------------------------------------------------------------------
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY . .
# No database during the image build: sqlx's query macros, if used, must read the
# committed .sqlx/ metadata.
ENV SQLX_OFFLINE=true
# Cache mounts keep the registry and target/ between builds; the binary is copied
# out because the target/ mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p homeserver \
    && install -m 0755 target/release/homeserver /usr/local/bin/homeserver

# ---- runtime -----------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
# ca-certificates: TLS to S3-compatible blob stores and other HTTPS peers.
# curl: the compose healthchecks call each service's /readyz from inside.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home homeserver \
    && mkdir -p /data && chown homeserver:homeserver /data
COPY --from=build /usr/local/bin/homeserver /usr/local/bin/homeserver

# Identity key and local blobs live here; mount a volume.
ENV HOMESERVER_DATA_DIR=/data
VOLUME ["/data"]
USER homeserver
WORKDIR /data
# 8080: each service's plain HTTP (and /healthz); the gateway also serves
# 6286 (plain HTTP) and 6287 (Pubky TLS).
EXPOSE 8080 6286 6287
ENTRYPOINT ["homeserver"]
CMD ["all"]
