# syntax=docker/dockerfile:1
#
# mimecast-exporter container image.
#
#   docker build -t mimecast-exporter .
#   docker run --rm -p 9836:9836 \
#     -v "$PWD/config.yml:/etc/mimecast-exporter/config.yml:ro" \
#     -v "$PWD/secrets:/run/secrets/mimecast:ro" \
#     mimecast-exporter
#
# Configuration: the image reads /etc/mimecast-exporter/config.yml (mount it,
# read-only). Credentials are expected as FILES, never as build arguments or
# baked-in values: mount them under /run/secrets (Docker/Compose secrets,
# Kubernetes Secret volumes) and point the config's *_file keys at them, e.g.
#   oauth2:
#     client_id_file: /run/secrets/mimecast/client_id
#     client_secret_file: /run/secrets/mimecast/client_secret
# The process runs as UID/GID 65532, so the files must be readable by it
# (e.g. owner 65532 and mode 0400, or group 65532 and mode 0440).
#
# Try it without a Mimecast account:
#   docker run --rm -p 9836:9836 mimecast-exporter --demo --web.listen-address=:9836
# (the demo listens on 127.0.0.1 unless told otherwise: inside a container
# that is unreachable from the host)

# Both stages use the same base, pinned to a specific release (bump both).
# --- stage 1: build the wheel -------------------------------------------------
FROM python:3.12.8-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Only what the wheel is built from (see .dockerignore).
COPY pyproject.toml README.md LICENSE ./
COPY mimecast_exporter ./mimecast_exporter
# What --version and mimecast_exporter_build_info say of this build (the
# release workflow passes them; see mimecast_exporter/build.py).
ARG REVISION=unknown
ARG BUILD_DATE=unknown
# --no-deps: only our own wheel; the runtime stage resolves the dependencies
# from pyproject.toml. Build requirements (setuptools, wheel) come from the
# [build-system] table, in pip's isolated build environment. The wheel is pure
# Python: no compiler in either stage.
RUN printf 'revision=%s\nbuild_date=%s\n' "$REVISION" "$BUILD_DATE" > mimecast_exporter/BUILD_INFO \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

# --- stage 2: runtime -----------------------------------------------------------
FROM python:3.12.8-slim-bookworm

ARG VERSION=0.2.0
LABEL org.opencontainers.image.title="mimecast-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Mimecast's message processing queue (API 1.0 and 2.0)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/mimecast-exporter/mimecast-exporter" \
      org.opencontainers.image.url="https://github.com/mimecast-exporter/mimecast-exporter" \
      org.opencontainers.image.documentation="https://github.com/mimecast-exporter/mimecast-exporter/blob/main/README.md"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH

# Reproducible: the dependencies come from requirements/image.lock, every
# version pinned and every file's hash checked (make lock regenerates it);
# then our wheel, which adds nothing more (--no-deps).
COPY requirements/image.lock /tmp/image.lock
COPY --from=build /dist /dist
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --require-hashes --no-deps -r /tmp/image.lock \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps /dist/*.whl \
    && /opt/venv/bin/pip check \
    && rm -rf /dist /tmp/image.lock \
    && mkdir -p /etc/mimecast-exporter

# A fixed, numeric, non-root identity (65532 is the conventional "nonroot"),
# so that Kubernetes' runAsNonRoot can verify it without an /etc/passwd entry.
USER 65532:65532
WORKDIR /etc/mimecast-exporter

EXPOSE 9836

# No curl or wget in the image: the exporter's own probe asks /-/healthy, and
# works with TLS and basic auth on (see mimecast_exporter/healthcheck.py).
# (Adjust --port if you change --web.listen-address.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/opt/venv/bin/python", "-m", "mimecast_exporter.healthcheck", "--port", "9836"]

ENTRYPOINT ["/opt/venv/bin/mimecast-exporter"]
CMD ["--config.file=/etc/mimecast-exporter/config.yml"]
