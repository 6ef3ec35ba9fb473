"""The operator endpoint: ``/healthz`` and ``/metrics`` over plain HTTP/1.1.

A deliberately small asyncio server (GET only, one request per connection, bounded request size and
read time) so the daemon needs no web framework. It listens on ``127.0.0.1`` unless configured
otherwise, and serves nothing that carries a secret.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("monitor.web")

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"


Handler = Callable[[], Awaitable[Response]]


def json_response(status: int, data: object) -> Response:
    return Response(status, json.dumps(data, sort_keys=True).encode() + b"\n")


class WebServer:
    def __init__(self, listen: str, routes: dict[str, Handler]) -> None:
        host, _, port = listen.rpartition(":")
        self._host = host.strip("[]")
        self._port = int(port)
        self._routes = routes
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        assert self._server is not None  # noqa: S101 -- programming error: start() first
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        log.info("web_listening", host=self._host, port=self.port)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
            method, path, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            path = path.split("?", 1)[0]
            handler = self._routes.get(path)
            if handler is None:
                response = json_response(404, {"error": "not found"})
            elif method not in ("GET", "HEAD"):
                response = json_response(405, {"error": "method not allowed"})
            else:
                response = await handler()
            reason = _REASONS.get(response.status, "OK")
            writer.write(
                f"HTTP/1.1 {response.status} {reason}\r\n"
                f"Content-Type: {response.content_type}\r\n"
                f"Content-Length: {len(response.body)}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            if method != "HEAD":
                writer.write(response.body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # a slow, truncated or malformed request gets no answer
        except OSError as exc:
            log.debug("web_client_error", error=str(exc))
        finally:
            writer.close()
