# ticker-monitor — the daemon image (docs/deployment.md).
#   build:  docker build -t ticker-monitor .
#   run:    docker compose up -d            (docker-compose.yml), or
#           docker run -d -v ticker-state:/var/lib/ticker-monitor -p 127.0.0.1:9464:9464 \
#             -v ./monitor.toml:/etc/ticker-monitor/monitor.toml:ro ticker-monitor
# Build arguments: BASE_IMAGE (a Debian-based Python >= 3.11 image) and PIP_CERT (a CA bundle inside
# the build, for build hosts behind a TLS-inspecting proxy).
ARG BASE_IMAGE=python:3.12-slim-bookworm

# --- build: a virtual environment with the pinned dependencies, no compilers needed (wheels only)
FROM ${BASE_IMAGE} AS build
ARG PIP_CERT=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/ticker-monitor
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY monitor ./monitor
# an empty PIP_CERT would be a certificate path of ""; unset, pip trusts its own bundle
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi; \
    /opt/ticker-monitor/bin/pip install --no-cache-dir -c constraints.txt ".[apprise]"

# --- run: the environment, the default configuration, an unprivileged user
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="ticker-monitor" \
      org.opencontainers.image.description="Watches web pages carrying a rate ticker and alerts on every change." \
      org.opencontainers.image.licenses="MIT"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/ticker-monitor \
    PATH="/opt/ticker-monitor/bin:$PATH"
COPY --from=build /opt/ticker-monitor /opt/ticker-monitor
RUN useradd --system --no-log-init --uid 10001 --user-group \
        --home-dir /var/lib/ticker-monitor --create-home --shell /usr/sbin/nologin monitor \
    && chmod 0750 /var/lib/ticker-monitor \
    && mkdir -p /etc/ticker-monitor
COPY config/monitor.toml config/monitor.schema.json /etc/ticker-monitor/

USER 10001:10001
WORKDIR /var/lib/ticker-monitor
# Configuration: the mounted file, MONITOR_* variables, and Docker secrets in /run/secrets
# (a secret named monitor_sinks__team__webhook_url fills [sinks.team].webhook_url).
# The endpoint listens on every interface *inside* the container, so the HEALTHCHECK and a
# published port reach it; publish it only to the host's loopback or a monitoring network.
ENV MONITOR_CONFIG=/etc/ticker-monitor/monitor.toml \
    MONITOR_MONITOR__DATABASE=sqlite:////var/lib/ticker-monitor/state.db \
    MONITOR_MONITOR__LOG_FORMAT=json \
    MONITOR_MONITOR__LISTEN=0.0.0.0:9464
VOLUME ["/var/lib/ticker-monitor"]
EXPOSE 9464
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; o = u.build_opener(u.ProxyHandler({})); sys.exit(o.open('http://127.0.0.1:9464/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["ticker-monitor"]
CMD ["run"]
