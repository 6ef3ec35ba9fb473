"""A real, scriptable HTTP/1.1 page server on loopback, for tests.

It speaks minimal HTTP/1.1 by hand over ``asyncio.start_server`` so that a test can make it do what
real servers do on bad days: drip bytes, stream huge bodies without building them, loop redirects,
answer garbage, stall before the status line, run a status sequence.

Three ways to run it::

    async with PageServer("<p>KGS/USD = 0.01144 0%</p>") as server:   # in the test's own loop
        server.url, server.set_page(...), server.script(Reply(500), Reply(500)), server.requests

    with ThreadedPageServer(page) as server:                           # its own loop in a thread
        ...                                                            # same API, thread-safe

    python -m tests.servers --port 8080 --page page.html                # a process of its own;
                                                                        # prints its URL, re-reads
                                                                        # the file when it changes

What a request gets, first match wins: the next scripted reply (``script``), else the route for its
path (``route``), else ``default`` if set, else the page (``set_page``), served with an ETag and a
Last-Modified and answering conditional requests with 304.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import http
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TextIO

__all__ = ["Handler", "LoopThread", "PageServer", "Reply", "Request", "ThreadedPageServer"]


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the server read it. Header names are lower-case."""

    method: str
    target: str
    path: str
    query: str
    headers: Mapping[str, str]
    #: the local port of the connection it came on (distinguishes keep-alive reuse)
    peer: str = ""
    #: the request body (a POST's payload, for the servers that stand in for Slack or a webhook)
    body: bytes = b""
    #: when it was read (``time.monotonic()``)
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted response.

    The body sent is ``body`` repeated ``repeat`` times, written ``chunk_size`` bytes at a time with
    ``drip`` seconds between writes, so ``Reply(body=b"x" * 65536, repeat=800)`` streams ~52 MB
    without holding it, and ``Reply(body=b"x" * 100, chunk_size=1, drip=1.0)`` drips 1 byte/s.
    """

    status: int = 200
    body: bytes = b""
    headers: Sequence[tuple[str, str]] = ()
    repeat: int = 1
    chunk_size: int = 65536
    #: seconds between two body writes
    drip: float = 0.0
    #: seconds before the status line is written
    delay: float = 0.0
    #: ``length``: Content-Length; ``chunked``: chunked encoding; ``close``: body ends at close
    framing: Literal["length", "chunked", "close"] = "length"
    #: written verbatim instead of a response, then the connection is closed
    raw: bytes | None = None
    #: close the connection after this response
    close: bool = False

    @property
    def length(self) -> int:
        return len(self.body) * self.repeat

    def chunks(self) -> Iterator[bytes]:
        size = max(1, self.chunk_size)
        for _ in range(self.repeat):
            for start in range(0, len(self.body), size):
                yield self.body[start : start + size]

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Reply:
        return cls(status, headers=[("Location", location)])


Handler = Reply | Callable[[Request], Reply]

_NO_BODY = frozenset({204, 304})


def _etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


@dataclass(slots=True)
class _Page:
    body: bytes
    content_type: str
    etag: str | None
    last_modified: str | None
    modified_at: float


class PageServer:
    """An HTTP/1.1 server on ``host`` (loopback) at an ephemeral port unless one is given."""

    def __init__(
        self,
        page: str | bytes = "",
        *,
        content_type: str = "text/html; charset=utf-8",
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self._lock = threading.Lock()
        self._queue: deque[Handler] = deque()
        self._routes: dict[str, Handler] = {}
        self._requests: list[Request] = []
        self._page = self._make_page(page, content_type, etag=True, last_modified=True)
        self.default: Handler | None = None
        self.in_flight = 0
        self.peak_in_flight = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- what it serves (thread-safe) --------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, ending in ``/``."""
        return self.url_for("/")

    def url_for(self, path: str) -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{self.host}:{self.port}{path}"

    @staticmethod
    def _make_page(
        page: str | bytes, content_type: str, *, etag: str | bool, last_modified: str | bool
    ) -> _Page:
        body = page.encode() if isinstance(page, str) else page
        now = time.time()
        return _Page(
            body=body,
            content_type=content_type,
            etag=_etag_of(body) if etag is True else (etag or None),
            last_modified=formatdate(now, usegmt=True)
            if last_modified is True
            else (last_modified or None),
            modified_at=now,
        )

    def set_page(
        self,
        page: str | bytes,
        *,
        content_type: str | None = None,
        etag: str | bool = True,
        last_modified: str | bool = True,
    ) -> None:
        """Serve ``page`` from now on. ``etag``/``last_modified``: True = computed, False = none."""
        with self._lock:
            self._page = self._make_page(
                page,
                content_type or self._page.content_type,
                etag=etag,
                last_modified=last_modified,
            )

    @property
    def page(self) -> bytes:
        with self._lock:
            return self._page.body

    @property
    def etag(self) -> str | None:
        with self._lock:
            return self._page.etag

    @property
    def last_modified(self) -> str | None:
        with self._lock:
            return self._page.last_modified

    def script(self, *replies: Handler) -> None:
        """Queue replies for the next requests, whatever their path, in order."""
        with self._lock:
            self._queue.extend(replies)

    def route(self, path: str, handler: Handler | None) -> None:
        """Answer requests for ``path`` (query ignored) with ``handler``; ``None`` removes it."""
        with self._lock:
            if handler is None:
                self._routes.pop(path, None)
            else:
                self._routes[path] = handler

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def page_reply(self, request: Request) -> Reply:
        """The page, or 304 when the request's validators still match it."""
        with self._lock:
            page = self._page
        headers = [("Content-Type", page.content_type)]
        if page.etag:
            headers.append(("ETag", page.etag))
        if page.last_modified:
            headers.append(("Last-Modified", page.last_modified))
        if self._not_modified(request, page):
            return Reply(304, headers=headers)
        return Reply(200, body=page.body, headers=headers)

    @staticmethod
    def _not_modified(request: Request, page: _Page) -> bool:
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None:
            if page.etag is None:
                return False
            tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
            return "*" in tags or page.etag.removeprefix("W/") in tags
        since = request.headers.get("if-modified-since")
        if since is None or page.last_modified is None:
            return False
        try:
            return parsedate_to_datetime(page.last_modified) <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False

    def _pick(self, request: Request) -> Reply:
        with self._lock:
            handler = self._queue.popleft() if self._queue else None
            if handler is None:
                handler = self._routes.get(request.path, self.default)
        if handler is None:
            return self.page_reply(request)
        return handler(request) if callable(handler) else handler

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_connect, self.host, self.port, ssl=self._ssl, limit=1 << 16
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- the protocol ------------------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        peer = str(writer.get_extra_info("peername", ("", ""))[1])
        try:
            while await self._one_exchange(reader, writer, peer):
                pass
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away (as a client that stops reading at a size cap does)
        except asyncio.CancelledError:
            # only stop() cancels a connection; ending normally keeps Python 3.11's stream
            # callback from logging the cancelled task as an error
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _one_exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = [*lines[0].split(" ", 2), "", ""][:3]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                key = name.strip().lower()
                value = value.strip()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
        length = headers.get("content-length", "0")
        body = b""
        if length.isdigit() and int(length):
            body = await reader.readexactly(int(length))
        path, _, query = target.partition("?")
        request = Request(method, target, path, query, headers, peer, body, time.monotonic())
        with self._lock:
            self._requests.append(request)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            reply = self._pick(request)
            keep_alive = await self._send(writer, request, reply)
        finally:
            self.in_flight -= 1
        return keep_alive and headers.get("connection", "").lower() != "close"

    async def _send(self, writer: asyncio.StreamWriter, request: Request, reply: Reply) -> bool:
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.raw is not None:
            writer.write(reply.raw)
            await writer.drain()
            return False
        try:
            phrase = http.HTTPStatus(reply.status).phrase
        except ValueError:
            phrase = "Status"
        has_body = reply.status not in _NO_BODY and not 100 <= reply.status < 200
        framing = reply.framing if has_body else "length"
        head = [f"HTTP/1.1 {reply.status} {phrase}"]
        head += [f"{name}: {value}" for name, value in reply.headers]
        if framing == "length" and has_body:
            head.append(f"Content-Length: {reply.length}")
        elif framing == "chunked":
            head.append("Transfer-Encoding: chunked")
        keep_alive = framing != "close" and not reply.close
        if not keep_alive:
            head.append("Connection: close")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        if has_body and request.method != "HEAD":
            for chunk in reply.chunks():
                if framing == "chunked":
                    writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                else:
                    writer.write(chunk)
                await writer.drain()
                if reply.drip:
                    await asyncio.sleep(reply.drip)
            if framing == "chunked":
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        return keep_alive


class LoopThread:
    """An event loop of its own in a daemon thread, for the servers a daemon *process* talks to
    (``ThreadedPageServer``, ``tests.receivers.ThreadedSmtpReceiver``)."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[object, object, object]) -> None:
        """Run ``coro`` on the thread's loop and wait for it (10 s at most)."""
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def close(self, coro: Coroutine[object, object, object]) -> None:
        """Run ``coro`` (the server's stop), then end the loop and the thread."""
        try:
            self.run(coro)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()


class ThreadedPageServer(PageServer):
    """A :class:`PageServer` running its own event loop in a daemon thread (a context manager)."""

    _thread: LoopThread

    def __enter__(self) -> Self:
        self._thread = LoopThread("page-server")
        self._thread.run(self.start())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._thread.close(self.stop())


@dataclass(slots=True)
class _FileWatch:
    """Serves a file's content, re-read whenever its modification time or size changes."""

    server: PageServer
    path: Path
    content_type: str
    validators: bool = True
    stamp: tuple[int, int] = field(default=(-1, -1))
    #: where each request is logged (``at query status version``), for the benchmarks
    log: TextIO | None = None
    version: str = ""

    def __call__(self, request: Request) -> Reply:
        reply = self._reply(request)
        if self.log is not None:
            self.log.write(f"{request.at:.6f} {request.query} {reply.status} {self.version}\n")
        return reply

    def _reply(self, request: Request) -> Reply:
        try:
            stat = self.path.stat()
        except OSError:
            return Reply(404, body=b"page file missing\n")
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self.stamp:
            self.stamp = stamp
            body = self.path.read_bytes()
            self.version = hashlib.sha256(body).hexdigest()[:12]
            self.server.set_page(
                body,
                content_type=self.content_type,
                etag=self.validators,
                last_modified=self.validators,
            )
        return self.server.page_reply(request)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.servers", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--page", type=Path, required=True, help="file to serve at every path")
    parser.add_argument("--content-type", default="text/html; charset=utf-8")
    parser.add_argument(
        "--no-validators", action="store_true", help="send no ETag/Last-Modified (never 304)"
    )
    parser.add_argument(
        "--log", type=Path, help="append 'monotonic-time query status page-version' per request"
    )
    args = parser.parse_args(argv)

    async def serve() -> None:
        server = PageServer(host=args.host, port=args.port, content_type=args.content_type)
        log = None if args.log is None else args.log.open("a", encoding="utf-8", buffering=1)
        server.default = _FileWatch(
            server, args.page, args.content_type, validators=not args.no_validators, log=log
        )
        await server.start()
        print(server.url, flush=True)  # the parent reads the port from this line
        try:
            await server.serve_forever()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
