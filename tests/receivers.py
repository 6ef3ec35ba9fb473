"""Real receivers on 127.0.0.1 for the sink tests: a scriptable HTTP/1.1 server and SMTP servers.

``HttpReceiver`` stands in for Slack, a webhook endpoint or Apprise's ``json://`` target: it records
every request (method, path, headers, body) and answers from a scripted queue of ``Reply`` values,
``200 ok`` once the queue is empty. With ``secret`` it verifies ``X-Signature-256`` like a careful
webhook consumer and answers ``401`` to a bad signature.

``SmtpReceiver`` is aiosmtpd's real SMTP protocol, served by ``loop.create_server`` on the test's
own event loop, in one of three modes: ``plain`` (no STARTTLS offered), ``starttls`` (offered and
required) or ``implicit`` (TLS from the first byte), with a trustme CA's certificate. Its handler
answers RCPT and DATA from scripted replies (``451``/``550``), checks AUTH credentials, and records
every MAIL, RCPT and accepted message.

``delivery()`` and ``batch_of()`` make outbox deliveries of realistic events.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import socket
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from http import HTTPStatus
from typing import Any, Literal

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from monitor.models import Delivery, Event, EventKind, Reading, dedup_key
from tests.servers import LoopThread

# --- HTTP ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``delay`` holds the answer back (to trip the client's timeout)."""

    status: int = 200
    body: bytes | str = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    signature_valid: bool | None = None

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """A minimal HTTP/1.1 server: one request per connection, answers from a script."""

    def __init__(self, *, secret: bytes | None = None) -> None:
        self.secret = secret
        self.requests: list[Request] = []
        self.script: deque[Reply] = deque()
        self.port = 0
        self._server: asyncio.Server | None = None

    def answer(self, *replies: Reply) -> None:
        self.script.extend(replies)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def __aenter__(self) -> HttpReceiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _read(self, reader: asyncio.StreamReader) -> Request | None:
        line = await reader.readline()
        if not line:
            return None
        method, path, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (raw := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int((await reader.readline()).strip().split(b";")[0], 16):
                body += await reader.readexactly(size)
                await reader.readline()
            await reader.readline()
        else:
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        valid = None
        if self.secret is not None:
            expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            valid = hmac.compare_digest(expected, headers.get("x-signature-256", ""))
        return Request(method, path, headers, body, valid)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await self._read(reader)
            if request is None:
                return
            self.requests.append(request)
            reply = self.script.popleft() if self.script else Reply()
            if request.signature_valid is False:
                reply = Reply(401, b"bad signature")
            if reply.delay:
                await asyncio.sleep(reply.delay)
            body = reply.body.encode() if isinstance(reply.body, str) else reply.body
            try:
                reason = HTTPStatus(reply.status).phrase
            except ValueError:
                reason = "Status"
            head = [f"HTTP/1.1 {reply.status} {reason}", f"Content-Length: {len(body)}"]
            head += [f"{k}: {v}" for k, v in reply.headers.items()]
            head += ["Content-Type: text/plain; charset=utf-8", "Connection: close", "", ""]
            writer.write("\r\n".join(head).encode() + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def refused_port() -> int:
    """A loopback port with nothing listening (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- SMTP ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    """One message the SMTP server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    tls: bool

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class Handler:
    """aiosmtpd hooks answering from scripts and recording everything."""

    def __init__(self) -> None:
        #: per recipient, the replies to its next RCPTs (then ``250``)
        self.rcpt_replies: dict[str, deque[str]] = {}
        #: replies to the next DATA commands (then ``250``)
        self.data_replies: deque[str] = deque()
        self.mail_froms: list[str] = []
        self.rcpts: list[str] = []
        #: the content of every DATA, accepted or not
        self.datas: list[bytes] = []
        self.mails: list[Mail] = []
        self.logins: list[tuple[str, bool]] = []

    def refuse(self, address: str, *replies: str) -> None:
        self.rcpt_replies.setdefault(address, deque()).extend(replies)

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        self.mail_froms.append(address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        self.rcpts.append(address)
        queue = self.rcpt_replies.get(address)
        if queue:
            reply = queue.popleft()
            if not reply.startswith("250"):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.datas.append(envelope.original_content or b"")
        if self.data_replies:
            reply = self.data_replies.popleft()
            if reply == DROP:  # the connection dies after the data, before any reply
                assert server.transport is not None
                server.transport.abort()
                return "421 dropped"
            if not reply.startswith("250"):
                return reply
        content = envelope.original_content or b""
        tls = server.transport is not None and (
            server.transport.get_extra_info("ssl_object") is not None
        )
        assert envelope.mail_from is not None
        self.mails.append(Mail(envelope.mail_from, tuple(envelope.rcpt_tos), content, tls))
        return "250 2.0.0 accepted"


Mode = Literal["plain", "starttls", "implicit"]

#: a ``data_replies`` entry: drop the connection after the message data, before the reply
DROP = "DROP"


class SmtpReceiver:
    """An aiosmtpd server on 127.0.0.1 in the test's event loop."""

    def __init__(
        self,
        mode: Mode = "plain",
        *,
        ca: trustme.CA | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.mode = mode
        self.handler = Handler()
        self.credentials = credentials
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tls: ssl.SSLContext | None = None
        if mode != "plain":
            assert ca is not None, "TLS modes need a CA"
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._tls)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = False
        if isinstance(data, LoginPassword) and self.credentials is not None:
            ok = (data.login.decode(), data.password.decode()) == self.credentials
            self.handler.logins.append((data.login.decode(), ok))
        return AuthResult(success=ok, handled=False)

    def _protocol(self) -> SMTP:
        return SMTP(
            self.handler,
            hostname="localhost",
            tls_context=self._tls if self.mode == "starttls" else None,
            require_starttls=self.mode == "starttls",
            authenticator=self._authenticate if self.credentials else None,
            auth_require_tls=self.mode == "starttls",
            auth_required=False,
            loop=asyncio.get_running_loop(),
        )

    async def __aenter__(self) -> SmtpReceiver:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol,
            "127.0.0.1",
            0,
            ssl=self._tls if self.mode == "implicit" else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


class ThreadedSmtpReceiver(SmtpReceiver):
    """A :class:`SmtpReceiver` on its own event loop in a daemon thread (a context manager), for
    tests of the daemon process. The handler's scripts and records are safe to use from the test's
    thread (deques and lists, appended to on the server's)."""

    _thread: LoopThread

    def __enter__(self) -> ThreadedSmtpReceiver:
        self._thread = LoopThread("smtp")
        self._thread.run(self.__aenter__())
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.close(self.__aexit__())


# --- deliveries ----------------------------------------------------------------------------------

T0 = datetime(2025, 5, 16, 9, 30, tzinfo=UTC)


def delivery(
    sink: str = "team",
    *,
    kind: EventKind = EventKind.CHANGE_PCT_CHANGED,
    target: str = "timesca",
    pair: str | None = "TMT/USD",
    old: tuple[str | None, str | None] | None = ("0.28575", "0"),
    new: tuple[str | None, str | None] | None = ("0.28575", "-0.14"),
    observed_at: datetime = T0,
    detail: str = "",
    rule: str | None = None,
    memo: str | None = None,
    row: int = 1,
    since_minutes: float | None = None,
    failed_checks: int | None = None,
    reminder: int = 0,
    test: bool = False,
    check_id: str = "check-1",
) -> Delivery:
    """A delivery of one event, TMT/USD's ``0%`` -> ``-0.14%`` unless told otherwise.

    ``since_minutes``: the condition began this long before ``observed_at``.
    """

    def reading(values: tuple[str | None, str | None] | None) -> Reading | None:
        if values is None:
            return None
        rate, pct = values
        return Reading(
            None if rate is None else Decimal(rate), None if pct is None else Decimal(pct)
        )

    event = Event(
        kind=kind,
        target=target,
        pair=pair,
        old=reading(old),
        new=reading(new),
        observed_at=observed_at,
        page_date=date(2025, 5, 16),
        source_url="https://timesca.com/",
        rule=rule,
        detail=detail,
        since=None if since_minutes is None else observed_at - timedelta(minutes=since_minutes),
        failed_checks=failed_checks,
        reminder=reminder,
        test=test,
    )
    return Delivery(
        id=row,
        dedup_key=dedup_key(event, sink),
        sink=sink,
        event=event,
        check_id=check_id,
        created_at=observed_at,
        memo=memo,
    )


def batch_of(
    count: int, sink: str = "team", *, target: str = "timesca", first_row: int = 1
) -> list[Delivery]:
    """``count`` distinct rate changes of one check of ``target`` (pairs P00/USD, P01/USD ...)."""
    return [
        delivery(
            sink,
            kind=EventKind.RATE_CHANGED,
            target=target,
            pair=f"P{i:02d}/USD",
            old=("1.000", "0"),
            new=(f"1.{i + 1:03d}", f"0.{i + 1:02d}"),
            row=first_row + i,
            check_id=f"check-{target}",
        )
        for i in range(count)
    ]


def checks_of(sizes: Sequence[int], sink: str = "team") -> list[Delivery]:
    """One check per size, of targets ``t0``, ``t1`` ..., each ``batch_of(size)``, rows in order."""
    out: list[Delivery] = []
    for i, size in enumerate(sizes):
        out += batch_of(size, sink, target=f"t{i}", first_row=len(out) + 1)
    return out


def retried(batch: Sequence[Delivery], memo: str | None) -> list[Delivery]:
    """The batch as the delivery worker hands it back after a retryable failure."""
    return [
        Delivery(d.id, d.dedup_key, d.sink, d.event, d.check_id, d.attempts + 1, d.created_at, memo)
        for d in batch
    ]
