# syntax=docker/dockerfile:1
# One image, three entry points: `core`, `facade`, `simulator` (and `run`, `migrate`) via `cursorgate <cmd>`.
# Build: docker build -t cursorgate .   Checked offline by `make deploy-check` (hadolint).

# Pinned Python (patch release and Debian base), the same in both stages so the venv's paths hold.
# PYTHON_IMAGE replaces it only where Docker Hub is out of reach (`make image-check` offline).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Code generation tools in their own venv, pinned as in pyproject.toml's dev extra (the gencode
# embeds their versions); they never reach the runtime image.
RUN python -m venv /opt/codegen \
 && /opt/codegen/bin/pip install grpcio-tools==1.85.1 protoc-gen-connectrpc==0.13.0

WORKDIR /src
COPY protos/ protos/
# What `make proto` does, without the typing stubs (not needed at run time).
WORKDIR /src/protos
RUN mkdir ../gen \
 && find . -name '*.proto' -exec /opt/codegen/bin/python -m grpc_tools.protoc -I . \
      --plugin=protoc-gen-connectrpc=/opt/codegen/bin/protoc-gen-connectrpc \
      --python_out=../gen --grpc_python_out=../gen \
      --connectrpc_out=../gen --connectrpc_opt=protobuf=google,io=async {} +

WORKDIR /src
COPY pyproject.toml README.md ./
COPY core/ core/
COPY facade/ facade/
COPY simulator/ simulator/
# The runtime venv: the project (with gen/ inside its wheel), the PostgreSQL driver, and
# OpenTelemetry (on only when OTEL_EXPORTER_OTLP_ENDPOINT is set).
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install '.[postgres,otel]'


FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    # In a container every layer serves its network, not loopback.
    CURSORGATE_HTTP_HOST=0.0.0.0 \
    CURSORGATE_GRPC_HOST=0.0.0.0 \
    CURSORGATE_SIMULATOR_HOST=0.0.0.0 \
    CURSORGATE_DATABASE_URL=sqlite+aiosqlite:////data/cursorgate.db

# A fixed non-root uid, so volume permissions and Kubernetes' runAsNonRoot agree.
RUN groupadd --system --gid 10001 cursorgate \
 && useradd --system --uid 10001 --gid cursorgate --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin cursorgate \
 && mkdir /data \
 && chown cursorgate:cursorgate /data

COPY --from=build /opt/venv /opt/venv

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# facade HTTP, core gRPC, core metrics, simulator
EXPOSE 8000 50051 9464 8790

ENTRYPOINT ["cursorgate"]
CMD ["run"]
