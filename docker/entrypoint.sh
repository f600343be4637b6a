#!/bin/sh
# Container entrypoint: starts the broker bound to every interface inside the container,
# advertising the address clients outside it use (see the Dockerfile for the CI case).
# KAFKA_* environment variables are settings (`kafkette serve --from-env`, named as in
# Confluent's and Apache's images: KAFKA_LISTENERS, KAFKA_LISTENER_SECURITY_PROTOCOL_MAP,
# KAFKA_SSL_KEYSTORE_LOCATION, KAFKA_SASL_ENABLED_MECHANISMS,
# KAFKA_LISTENER_NAME_SASL__SSL_PLAIN_SASL_JAAS_CONFIG, ...): they win over the defaults
# below, and arguments win over them.
# Arguments that start with "-" (or none) are extra `kafkette serve` options; anything
# else is run as a command, e.g. `docker run --rm kafkette kafkette --help`.
set -e

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    exec kafkette serve \
        --set listeners=PLAINTEXT://0.0.0.0:9092 \
        --set "advertised.listeners=PLAINTEXT://${KAFKETTE_ADVERTISED_HOST}:${KAFKETTE_ADVERTISED_PORT}" \
        --set log.dirs=/var/lib/kafkette \
        --set schema.registry.listener=0.0.0.0:8081 \
        --from-env \
        "$@"
fi
exec "$@"
