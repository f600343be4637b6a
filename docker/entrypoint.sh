#!/bin/sh
# Container entrypoint: starts the broker bound to every interface inside the container,
# advertising the address clients outside it use (see the Dockerfile for the CI case).
# Arguments that start with "-" (or none) are extra `kafkette serve` options; anything
# else is run as a command, e.g. `docker run --rm kafkette kafkette --help`.
set -e

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    exec kafkette serve \
        --set listeners=PLAINTEXT://0.0.0.0:9092 \
        --set "advertised.listeners=PLAINTEXT://${KAFKETTE_ADVERTISED_HOST}:${KAFKETTE_ADVERTISED_PORT}" \
        --set log.dirs=/var/lib/kafkette \
        "$@"
fi
exec "$@"
