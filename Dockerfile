# ticker-monitor — the daemon image.
#   build:  docker build -t ticker-monitor .
#   run:    docker run -v ticker-state:/var/lib/ticker-monitor -v ./monitor.toml:/etc/ticker-monitor/monitor.toml:ro ticker-monitor
ARG BASE_IMAGE=python:3.12-slim-bookworm
FROM ${BASE_IMAGE}

# PIP_CERT lets pip trust a build host's own certificate authority (see docs/deployment.md).
ARG PIP_CERT=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/ticker-monitor
RUN python3 -m venv "$VIRTUAL_ENV"
ENV PATH="$VIRTUAL_ENV/bin:$PATH"

WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY monitor ./monitor
RUN if [ -n "$PIP_CERT" ]; then export PIP_CERT; fi; \
    pip install -c constraints.txt ".[apprise]" && rm -rf /src

RUN useradd --system --home-dir /var/lib/ticker-monitor --create-home --uid 10001 monitor \
    && mkdir -p /etc/ticker-monitor
COPY config/monitor.toml /etc/ticker-monitor/monitor.toml

USER monitor
WORKDIR /var/lib/ticker-monitor
ENV MONITOR_CONFIG=/etc/ticker-monitor/monitor.toml \
    MONITOR_MONITOR__DATABASE=sqlite:////var/lib/ticker-monitor/state.db \
    MONITOR_MONITOR__LOG_FORMAT=json \
    MONITOR_MONITOR__LISTEN=0.0.0.0:9464
VOLUME ["/var/lib/ticker-monitor"]
EXPOSE 9464
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4).status != 200)"
ENTRYPOINT ["ticker-monitor"]
CMD ["run"]
