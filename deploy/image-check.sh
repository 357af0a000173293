#!/usr/bin/env bash
# `make image-check`: build the image and smoke-test it with a real Docker daemon. Optional (not in
# .ci/run): it skips, with the reason, when no daemon answers. Steps:
#  1. docker build (PYTHON_IMAGE=... swaps the base where Docker Hub is out of reach);
#  2. the image alone: a simulator container and a gateway container (`cursorgate run`) on a
#     private network; the gateway must answer /healthz and a chat against the simulator;
#  3. deploy/compose.yaml with its simulator profile (2 cores, 2 facades, PostgreSQL, Redis, nginx):
#     the same two checks through nginx. Skipped, with the reason, when `docker compose` is
#     missing or the third-party images (postgres, redis, nginx) cannot be pulled.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
  echo "image-check: SKIPPED: no Docker daemon answers ('docker info' failed). Start dockerd (as root:"
  echo "  dockerd &) or run this where Docker runs."
  exit 0
fi

TAG=${CURSORGATE_IMAGE:-cursorgate:check}
LICENSE=sk-image-check
# Any JWT-shaped token will do for the simulator (the README's demo token).
TOKEN=eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAiYXV0aDB8dXNlcl9kZW1vIiwgImV4cCI6IDQxMDI0NDQ4MDB9.c2ltdWxhdG9y
NAME=cursorgate-check-$$

build_args=()
if [ -n "${PYTHON_IMAGE:-}" ]; then build_args+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE"); fi
echo "image-check: building $TAG"
docker build "${build_args[@]}" -t "$TAG" .

cleanup() {
  docker rm -f "$NAME-sim" "$NAME-gw" >/dev/null 2>&1 || true
  docker network rm "$NAME" >/dev/null 2>&1 || true
  if [ -n "${COMPOSE_UP:-}" ]; then
    CURSORGATE_IMAGE=$TAG docker compose -p "$NAME" -f deploy/compose.yaml --profile simulator down -v >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

# Waits for $1/healthz, then asks $1 for a chat; fails with the containers' logs otherwise.
smoke() {
  local base=$1 i
  for i in $(seq 1 120); do
    if curl -fsS "$base/healthz" >/dev/null 2>&1; then break; fi
    if [ "$i" = 120 ]; then echo "image-check: $base/healthz never answered"; return 1; fi
    sleep 1
  done
  echo "image-check: $base/healthz: $(curl -fsS "$base/healthz")"
  local answer
  answer=$(curl -fsS "$base/cursor/v1/chat/completions" -H "authorization: Bearer $LICENSE" \
    -H 'content-type: application/json' \
    -d '{"model": "claude-4.5-sonnet", "messages": [{"role": "user", "content": "image check"}]}')
  echo "image-check: chat: $answer"
  case $answer in
    *'You said: image check'*) ;;
    *) echo "image-check: the chat did not come back from the simulator"; return 1 ;;
  esac
}

echo "image-check: the image alone (simulator + cursorgate run)"
docker network create "$NAME" >/dev/null
docker run -d --name "$NAME-sim" --network "$NAME" --network-alias simulator "$TAG" simulator >/dev/null
docker run -d --name "$NAME-gw" --network "$NAME" -p 127.0.0.1::8000 \
  -e CURSOR_TOKEN="$TOKEN" -e CURSORGATE_LICENSES="$LICENSE" \
  -e CURSORGATE_UPSTREAM_URL=http://simulator:8790 -e CURSORGATE_DISCOVER_VERSIONS=0 \
  "$TAG" run >/dev/null
port=$(docker port "$NAME-gw" 8000/tcp | head -1 | sed 's/.*://')
if ! smoke "http://127.0.0.1:$port"; then
  docker logs "$NAME-sim" 2>&1 | tail -20
  docker logs "$NAME-gw" 2>&1 | tail -40
  exit 1
fi

echo "image-check: the image alone: OK"

echo "image-check: deploy/compose.yaml (--profile simulator)"
if ! docker compose version >/dev/null 2>&1; then
  echo "image-check: compose SKIPPED: the docker compose plugin is not installed"
  exit 0
fi
for image in $(sed -n 's/^ *image: \([a-z][^$]*\)$/\1/p' deploy/compose.yaml); do
  if ! docker image inspect "$image" >/dev/null 2>&1 && ! docker pull -q "$image" >/dev/null 2>&1; then
    echo "image-check: compose SKIPPED: cannot pull $image (no registry access?)"
    exit 0
  fi
done
COMPOSE_UP=1
http_port=${IMAGE_CHECK_HTTP_PORT:-18000}
CURSORGATE_IMAGE=$TAG CURSORGATE_HTTP_PORT=$http_port CURSORGATE_GRPC_PORT=${IMAGE_CHECK_GRPC_PORT:-15051} \
  CURSORGATE_UPSTREAM_URL=http://simulator:8790 CURSOR_TOKEN=$TOKEN CURSORGATE_LICENSES=$LICENSE \
  docker compose -p "$NAME" -f deploy/compose.yaml --profile simulator up -d --wait
smoke "http://127.0.0.1:$http_port"
echo "image-check: OK"
