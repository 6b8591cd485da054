# syntax=docker/dockerfile:1
#
# One dfs peer per container, configured by environment only (every `dfs-peer serve` flag has a
# DFS_* variable; see docs/DEPLOYMENT.md). Build: docker build -t dfs-peer .

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: build the project's wheel and install it with its dependencies into /opt/venv -------
FROM ${PYTHON_IMAGE} AS builder

RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --upgrade pip

WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY peer ./peer
COPY client ./client
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check . \
 && /opt/venv/bin/dfs-peer --help >/dev/null

# --- runtime: the same Python image plus the venv, running as an unprivileged user --------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="dfs-peer" \
      org.opencontainers.image.description="A peer of the dfs peer-to-peer distributed file store"

# The data directory is created and owned by the peer's user before VOLUME, so a fresh volume
# (named or anonymous) starts out with that ownership.
RUN groupadd --system --gid 10001 dfs \
 && useradd --system --uid 10001 --gid dfs --home-dir /data --no-create-home --shell /usr/sbin/nologin dfs \
 && mkdir /data \
 && chown dfs:dfs /data

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    DFS_DATA_DIR=/data \
    DFS_GRPC_ADDR=0.0.0.0:50051 \
    DFS_GOSSIP_ADDR=0.0.0.0:7946

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]

# 50051: gRPC (clients and peers). 7946: gossip and GET /health (HTTP).
EXPOSE 50051 7946

# /health answers 200 when the peer is ok and 503 when degraded (metadata store unreachable);
# urlopen raises on 503 or on no answer, which exits non-zero. The slim image has no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; host, _, port = os.environ.get('DFS_GOSSIP_ADDR', '0.0.0.0:7946').rpartition(':'); host = host.strip('[]'); host = {'': '127.0.0.1', '0.0.0.0': '127.0.0.1', '::': '::1'}.get(host, host); host = f'[{host}]' if ':' in host else host; urllib.request.urlopen(f'http://{host}:{port}/health', timeout=3)"]

ENTRYPOINT ["dfs-peer"]
CMD ["serve"]
