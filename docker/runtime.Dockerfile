# The homeserver's runtime image around a binary built on the host: the path where no
# Rust toolchain can be pulled (scripts/compose.sh copies target/release/homeserver
# into the build context next to this file). The Dockerfile at the root builds from
# source and ends in the same runtime stage; keep the two stages alike.
#
#   RUNTIME_IMAGE  debian:bookworm-slim (official) or the local base made by
#                  scripts/docker-base.sh (hs-debian:bookworm)
ARG RUNTIME_IMAGE=debian:bookworm-slim
FROM ${RUNTIME_IMAGE}
# ca-certificates: TLS to S3-compatible blob stores and other HTTPS peers.
# curl: the compose healthchecks call each service's /readyz from inside.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home homeserver \
    && mkdir -p /data && chown homeserver:homeserver /data
COPY homeserver /usr/local/bin/homeserver
ENV HOMESERVER_DATA_DIR=/data
VOLUME ["/data"]
USER homeserver
WORKDIR /data
EXPOSE 8080 6286 6287
ENTRYPOINT ["homeserver"]
CMD ["all"]
