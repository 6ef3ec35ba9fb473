"""The operator endpoint: the status page, ``/healthz``, ``/readyz``, ``/metrics``, ``/api/status``.

A Starlette application served by uvicorn *inside the daemon's own event loop* (a task, not a
thread or a process). uvicorn installs no signal handlers here — the daemon owns SIGTERM/SIGINT and
stops the server as part of its graceful stop. The socket is bound before uvicorn starts, so a
port in use is a one-line configuration error, not a stack trace from inside a task.

=================  ================================================================================
``/``              the status page (server-drawn HTML, no scripts, refreshes itself)
``/api/status``    the same picture as JSON (what ``ticker-monitor status`` prints)
``/healthz``       200 while the process and its loop are alive; never touches the store
``/readyz``        200 when the store answers and takes writes and every target is fresh, else 503
                   naming each failing target (and ``store``) and why; from memory: it never
                   waits on the database
``/metrics``       Prometheus text
=================  ================================================================================

Nothing served carries a secret (see :mod:`monitor.status`). The page's Content-Security-Policy
allows no script and no external resource at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Generator
from typing import Protocol

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from monitor import statuspage
from monitor.errors import ConfigError
from monitor.settings import beyond_loopback, listen_address
from monitor.status import StatusView

log = structlog.get_logger("monitor.web")

#: the page may use its own inline styles and data: images, nothing else
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StatusSource(Protocol):
    """What the endpoint serves (``monitor.status.StatusService`` for a daemon)."""

    def health(self) -> dict[str, object]: ...

    def readiness(self) -> tuple[bool, dict[str, object]]: ...

    def metrics(self) -> bytes: ...

    async def view(self) -> StatusView: ...


def operator_app(source: StatusSource, *, refresh: int = statuspage.REFRESH) -> Starlette:
    """The Starlette application of the operator endpoint."""

    async def page(_: Request) -> Response:
        view = await source.view()
        return HTMLResponse(statuspage.render(view, refresh=refresh), headers=PAGE_HEADERS)

    async def api_status(_: Request) -> Response:
        return JSONResponse((await source.view()).to_json(), headers={"Cache-Control": "no-store"})

    async def healthz(_: Request) -> Response:
        return JSONResponse(source.health())

    async def readyz(_: Request) -> Response:
        ready, body = source.readiness()
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(_: Request) -> Response:
        # off the loop: 5,000 targets' series take seconds to render (docs/performance.md)
        return Response(await asyncio.to_thread(source.metrics), media_type=PROMETHEUS_TYPE)

    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/status", api_status),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ]
    )


def _reason(exc: OSError) -> str:
    """``Address already in use``: the OS's words (``create_server`` appends the address)."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon decides when it stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class WebServer:
    """Serves an ASGI app on ``listen`` (``host:port``; port 0 picks a free one) in this loop."""

    def __init__(self, app: Starlette, listen: str) -> None:
        self._app = app
        self._listen = listen
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return self._port

    async def start(self) -> None:
        host, port = listen_address(self._listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.create_server((host, port), family=family)
        except OSError as exc:
            raise ConfigError(
                [f"monitor.listen: cannot listen on {self._listen}: {_reason(exc)}"]
            ) from None
        self._port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._app,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
            server_header=False,
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="web")
        while not self._server.started:  # binding is done; this is uvicorn's own start-up
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise ConfigError([f"monitor.listen: the endpoint on {self._listen} stopped"])
            await asyncio.sleep(0.01)
        log.info("web_listening", host=host, port=self._port)
        if beyond_loopback(host):
            log.warning(
                "web_listening_beyond_loopback",
                host=host,
                port=self._port,
                detail="the status page, /api/status and /metrics are reachable from other hosts",
            )

    async def aclose(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._server = self._task = None


__all__ = ["StatusSource", "WebServer", "operator_app"]
