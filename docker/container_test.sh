#!/usr/bin/env bash
# Builds the image with podman and smoke-tests it: start-up to the first answer,
# produce/consume with kafka-python and confluent-kafka through the container's port,
# HEALTHCHECK command, clean stop on SIGTERM, image size. `make container-test`.
# Skips (exit 0, with a message) only where podman cannot run: not root, or no apt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PORT=${KAFKETTE_CONTAINER_PORT:-19392}
NAME=kafkette-ci-$$
SHARED=${KAFKETTE_SHARED_DIR:-../shared}

if ! command -v podman >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "SKIP container test: podman is not installed and cannot be (needs root and apt)"
    exit 0
  fi
fi
# Local stand-ins for python:3.11-slim (no image registry is reachable here).
if ! podman image exists docker.io/library/python:3.11-slim 2>/dev/null; then
  if [ ! -f "$SHARED/container/make-base-images.sh" ]; then
    echo "SKIP container test: no base image and no $SHARED/container/make-base-images.sh"
    exit 0
  fi
  bash "$SHARED/container/make-base-images.sh"
fi

t0=$(date +%s)
podman build --pull=never --format docker -t kafkette:ci . >/tmp/kafkette-image-build.log 2>&1 \
  || { tail -40 /tmp/kafkette-image-build.log; exit 1; }
echo "image built in $(( $(date +%s) - t0 ))s; size: $(podman image inspect kafkette:ci --format '{{.Size}}' | awk '{printf "%.1f MB", $1/1e6}')"

cleanup() { podman rm -f "$NAME" >/dev/null 2>&1 || true; }
trap cleanup EXIT

# --network=host: the CI machine has no bridge networking; the broker listens on $PORT.
start_ns=$(date +%s%N)
podman run -d --init --network=host --name "$NAME" \
  -e KAFKETTE_ADVERTISED_HOST=127.0.0.1 -e KAFKETTE_ADVERTISED_PORT="$PORT" \
  kafkette:ci --set "listeners=PLAINTEXT://0.0.0.0:$PORT" >/dev/null
for _ in $(seq 300); do
  if "$PY" -m kafkette healthcheck --bootstrap-server "127.0.0.1:$PORT" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
"$PY" -m kafkette healthcheck --bootstrap-server "127.0.0.1:$PORT" >/dev/null \
  || { podman logs "$NAME" | tail -30; echo "container did not answer"; exit 1; }
echo "container run -> first ApiVersions answer: $(( ($(date +%s%N) - start_ns) / 1000000 )) ms"

# The image's own HEALTHCHECK command, run inside the container, as non-root.
podman exec "$NAME" kafkette healthcheck --bootstrap-server "127.0.0.1:$PORT"
[ "$(podman exec "$NAME" id -u)" != 0 ] || { echo "container runs as root"; exit 1; }

"$PY" docker/smoke_test.py "127.0.0.1:$PORT"

# podman stop sends SIGTERM; the broker must shut down cleanly (exit 0) well before
# podman's 10 s kill timeout.
t1=$(date +%s%N)
podman stop -t 10 "$NAME" >/dev/null
code=$(podman inspect "$NAME" --format '{{.State.ExitCode}}')
echo "stopped in $(( ($(date +%s%N) - t1) / 1000000 )) ms with exit code $code"
[ "$code" = 0 ] || { podman logs "$NAME" | tail -20; exit 1; }
# conmon writes the container's log asynchronously: the last lines can reach
# `podman logs` a moment after `podman stop` returns, so wait for them (with a deadline).
# The log is read into a variable first: `podman logs | grep -q` under pipefail fails
# when grep exits at the first match and podman, still writing, gets SIGPIPE.
stopped_line() { local logs; logs=$(podman logs "$NAME" 2>&1) || return 1; grep -q "broker stopped" <<<"$logs"; }
for _ in $(seq 50); do
  if stopped_line; then break; fi
  sleep 0.1
done
stopped_line || { podman logs "$NAME" 2>&1 | tail -20; echo "no clean-shutdown log line"; exit 1; }
echo "container test passed"
