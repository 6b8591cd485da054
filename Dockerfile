# syntax=docker/dockerfile:1
#
# One dfs peer per container, configured by environment only (every `dfs-peer serve` flag has a
# DFS_* variable; see docs/DEPLOYMENT.md). Build: docker build -t dfs-peer .
#
# A peer refuses to start without a way for peers to authenticate each other: either TLS
# (DFS_TLS_CERT, DFS_TLS_KEY, DFS_TLS_CA, e.g. from `dfs-peer certs init` into /certs) or
# DFS_CLUSTER_SECRET; DFS_NO_AUTH=1 is for local development only. The same image runs those
# one-shot commands too: `docker run --rm -v dfs-certs:/certs dfs-peer certs init --dir /certs`.

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

# The data directory and the certificate directory are created and owned by the peer's user, so a
# fresh volume mounted on either (named or anonymous) starts out with that ownership: /data is the
# image's VOLUME, and a named volume at /certs lets `certs init` write there as this user. /certs is
# mode 700 (it may hold the CA key); it is not a VOLUME, so without TLS nothing is created for it.
RUN groupadd --system --gid 10001 dfs \
 && useradd --system --uid 10001 --gid dfs --home-dir /data --no-create-home --shell /usr/sbin/nologin dfs \
 && mkdir /data /certs \
 && chown dfs:dfs /data /certs \
 && chmod 700 /certs

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    DFS_DATA_DIR=/data \
    DFS_GRPC_ADDR=0.0.0.0:50051 \
    DFS_GOSSIP_ADDR=0.0.0.0:7946

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]

# 50051: gRPC for clients (TLS when DFS_TLS_* are set; without TLS, peers' internal calls too).
# 50151: with TLS, the internal chunk service between peers (mutual TLS; DFS_PEER_GRPC_ADDR, by
#        default the gRPC port + 100). 7946: gossip and GET /health (HTTPS with TLS).
EXPOSE 50051 50151 7946

# `dfs-peer health` reads the container's DFS_GOSSIP_ADDR (0.0.0.0 means loopback) and DFS_TLS_CA
# (set: HTTPS, the peer verified against that CA) and GETs /health: exit 0 on 200, 1 on 503
# (degraded: metadata store unreachable), no answer or a TLS failure. The slim image has no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["dfs-peer", "health"]

ENTRYPOINT ["dfs-peer"]
CMD ["serve"]
