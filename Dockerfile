# syntax=docker/dockerfile:1
# The chatmesh image: every service, `chatmesh serve <name>` (helm/chatmesh runs it so).
#   docker build -t chatmesh .
#   docker run --rm chatmesh config
ARG PYTHON_VERSION=3.11

# Builder: the wheel of this checkout (gen/ included), installed with the cluster extra
# (ScyllaDB, NATS, Redis, S3 clients) into a venv at the path the runtime uses.
FROM python:${PYTHON_VERSION}-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# A compiler for any dependency without a wheel for the platform; the runtime stage has none.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY gen/ gen/
COPY chatmesh_common/ chatmesh_common/
COPY chatmesh_launcher/ chatmesh_launcher/
COPY chat_service/ chat_service/
COPY presence_service/ presence_service/
COPY gateway_ws/ gateway_ws/
COPY search_service/ search_service/
COPY media_service/ media_service/
COPY notify_service/ notify_service/
RUN python -m venv /opt/chatmesh \
    && /opt/chatmesh/bin/pip install --upgrade pip wheel \
    && /opt/chatmesh/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/chatmesh/bin/pip install --constraint constraints.txt \
        "$(ls /wheels/chatmesh-*.whl)[cluster]" \
    && /opt/chatmesh/bin/chatmesh config > /dev/null

# Runtime: the venv on a slim Python, run by an unprivileged user. The bytecode is compiled at
# install time, so a read-only root filesystem works (only /tmp and data volumes are written).
FROM python:${PYTHON_VERSION}-slim AS runtime
RUN groupadd --system --gid 10001 chatmesh \
    && useradd --system --uid 10001 --gid chatmesh --no-create-home \
        --home-dir /var/lib/chatmesh --shell /usr/sbin/nologin chatmesh \
    && mkdir -p /var/lib/chatmesh \
    && chown chatmesh:chatmesh /var/lib/chatmesh
COPY --from=builder /opt/chatmesh /opt/chatmesh
ENV PATH=/opt/chatmesh/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CHATMESH_DATA_DIR=/var/lib/chatmesh
WORKDIR /var/lib/chatmesh
USER 10001:10001
# gRPC (chat 50051, presence 50052, search 50054, notify 50055, media 50056), WebSocket 8080,
# metrics 9101-9108: each set by its service's settings.
EXPOSE 50051 50052 50054 50055 50056 8080
ENTRYPOINT ["chatmesh"]
CMD ["--help"]
