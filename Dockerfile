# kafkette broker image.
#
#   docker build -t kafkette .
#   docker run --rm -p 9092:9092 kafkette            # clients on this machine: localhost:9092
#
# The broker binds 0.0.0.0:9092 inside the container and advertises
# ${KAFKETTE_ADVERTISED_HOST}:${KAFKETTE_ADVERTISED_PORT} (default localhost:9092) in
# Metadata, which is right for the laptop case: a published port 9092 on the host.
#
# CI / compose networks: other containers reach the broker by its service name, so
# advertise that name (and the port they connect to), e.g.
#   services:
#     kafka:
#       image: kafkette
#       environment:
#         KAFKETTE_ADVERTISED_HOST: kafka
# and clients use bootstrap server kafka:9092. Publishing on another host port
# (-p 19092:9092) needs KAFKETTE_ADVERTISED_PORT=19092. With the default "localhost", a client in
# another container would bootstrap fine and then be sent to its own localhost.
#
# Extra arguments are passed to `kafkette serve`, later --set wins:
#   docker run --rm -p 9092:9092 kafkette --set num.partitions=3
# KAFKA_* environment variables are settings too (between the defaults and the
# arguments), named as in Confluent's and Apache's images: `_` -> `.`, `__` -> `_`,
# `___` -> `-`. A SASL_SSL listener next to the PLAINTEXT one, certificates mounted:
#   docker run -p 9092:9092 -p 9093:9093 -v $PWD/certs:/certs \
#     -e KAFKA_LISTENERS=PLAINTEXT://0.0.0.0:9092,SASL_SSL://0.0.0.0:9093 \
#     -e KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://localhost:9092,SASL_SSL://localhost:9093 \
#     -e KAFKA_SSL_KEYSTORE_TYPE=PEM -e KAFKA_SSL_KEYSTORE_LOCATION=/certs/server.pem \
#     -e KAFKA_SASL_ENABLED_MECHANISMS=SCRAM-SHA-512,PLAIN \
#     -e KAFKA_LISTENER_NAME_SASL__SSL_PLAIN_SASL_JAAS_CONFIG='org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-secret";' \
#     kafkette
# The HEALTHCHECK probes PLAINTEXT 127.0.0.1:9092; when 9092 is secured, override it
# (--health-cmd 'kafkette healthcheck --command-config /certs/client.properties').
# Data lives in the volume /var/lib/kafkette. Logs are JSON lines unless the container
# has a TTY (docker run -t); KAFKETTE_LOG_FORMAT=console|json forces one.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --gid 1000 kafkette \
 && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /var/lib/kafkette \
            --shell /usr/sbin/nologin kafkette \
 && mkdir -p /var/lib/kafkette \
 && chown kafkette:kafkette /var/lib/kafkette

WORKDIR /usr/src/kafkette
COPY . .
RUN python -m pip install --no-cache-dir . \
 && install -m 0755 docker/entrypoint.sh /usr/local/bin/kafkette-entrypoint \
 && rm -rf build ./*.egg-info

ENV KAFKETTE_ADVERTISED_HOST=localhost \
    KAFKETTE_ADVERTISED_PORT=9092

VOLUME /var/lib/kafkette
# 8081: the built-in Schema Registry (schema.registry.listener)
EXPOSE 9092 8081
# numeric, so that runtimes (Kubernetes runAsNonRoot) can tell it is not root
USER 1000:1000
WORKDIR /var/lib/kafkette

# `kafkette healthcheck` sends ApiVersions and exits 0 when the broker answers.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["kafkette", "healthcheck", "--bootstrap-server", "127.0.0.1:9092"]

# The broker runs as PID 1 (the entrypoint execs it): it must handle SIGTERM itself,
# since PID 1 gets no default signal handlers. `docker run --init` adds a reaper.
STOPSIGNAL SIGTERM
ENTRYPOINT ["kafkette-entrypoint"]
