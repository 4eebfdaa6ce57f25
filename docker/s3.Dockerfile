# An S3 API server built locally, for machines that reach package mirrors but no image
# registry: moto's server at the version scripts/services.sh pins (the one `make test`
# runs the S3 blob store against), installed from wheels that scripts/compose.sh
# downloaded on the host into the build context. Operators with internet get the
# official motoserver/moto image of the same version instead (docker-compose.s3.yml);
# both run `moto_server -H 0.0.0.0` on port 5000 with python3 and boto3 on the PATH.
#
# moto keeps its objects in memory: a test server for the compose drills, not a place
# for anyone's data (point docker/blobs-s3.toml at a real S3 for that).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
COPY wheels /tmp/wheels
RUN python3 -m venv /opt/moto \
    && /opt/moto/bin/pip install --no-index --no-cache-dir --find-links /tmp/wheels \
        -r /tmp/wheels/requirements.txt \
    && rm -rf /tmp/wheels
ENV PATH=/opt/moto/bin:$PATH
RUN useradd --system --uid 10003 --user-group --no-create-home moto
USER moto
EXPOSE 5000
ENTRYPOINT ["moto_server", "-H", "0.0.0.0"]
