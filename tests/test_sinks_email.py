"""The email sink against real aiosmtpd servers on 127.0.0.1 (plain, STARTTLS, implicit TLS)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
import trustme
from pydantic import SecretStr

from monitor.errors import SinkError
from monitor.sinks import Sink
from monitor.sinks.email import EmailConfig, EmailSink
from tests.receivers import SmtpReceiver, batch_of, delivery, refused_port, retried

ALICE, BOB = "alice@example.com", "bob@example.com"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def make(
    port: int,
    *,
    tls: str = "none",
    to: tuple[str, ...] = (ALICE,),
    tls_context: ssl.SSLContext | None = None,
    **extra: Any,
) -> EmailSink:
    config = EmailConfig.model_validate(
        {
            "type": "email",
            "host": "127.0.0.1",
            "port": port,
            "tls": tls,
            "from": "monitor@example.com",
            "to": list(to),
            "timeout": 5.0,
            **extra,
        }
    )
    return EmailSink("mail", config, tls_context=tls_context, local_hostname="client.test")


async def test_plain_mail_has_headers_text_and_escaped_html() -> None:
    async with SmtpReceiver() as smtp:
        sink = make(smtp.port, to=(ALICE,), cc=[BOB])
        assert isinstance(sink, Sink)
        batch = [delivery("mail", pair="TMT/USD <b>&"), delivery("mail", pair="KZT/USD", row=2)]
        await sink.send(batch)
        (mail,) = smtp.handler.mails
        assert sorted(mail.rcpt_tos) == [ALICE, BOB]
        msg = mail.message
        assert msg["From"] == "monitor@example.com"
        assert msg["To"] == ALICE
        assert msg["Cc"] == BOB
        assert msg["Subject"] == "[ticker-monitor] timesca: TMT/USD <b>& ▼, KZT/USD ▼"
        assert msg["Message-ID"].startswith("<digest-")
        assert msg["Auto-Submitted"] == "auto-generated"
        assert msg.get_content_type() == "multipart/alternative"
        text = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        assert text is not None
        assert html is not None
        assert "TMT/USD <b>& ▼ 0.28575, change 0% → -0.14%" in text.get_content()
        html_text = html.get_content()
        assert "TMT/USD &lt;b&gt;&amp;" in html_text
        assert "<b>&" not in html_text
        for d in batch:
            assert d.short_id in text.get_content()
            assert d.short_id in html_text


async def test_single_delivery_message_id_is_its_dedup_key() -> None:
    async with SmtpReceiver() as smtp:
        d = delivery("mail")
        await make(smtp.port).send([d])
        msg = smtp.handler.mails[0].message
        assert msg["Message-ID"] == f"<{d.dedup_key}@ticker-monitor>"
        assert msg["Subject"] == "[ticker-monitor] timesca: TMT/USD ▼ 0.28575, change -0.14%"


async def test_451_then_accept_sends_one_mail_with_a_stable_message_id() -> None:
    async with SmtpReceiver() as smtp:
        smtp.handler.data_replies.append("451 4.3.0 try again later")
        sink = make(smtp.port)
        batch = batch_of(2, "mail")
        with pytest.raises(SinkError) as info:
            await sink.send(batch)
        assert info.value.retryable
        assert "451" in str(info.value)
        await sink.send(retried(batch, info.value.memo))
        assert len(smtp.handler.mails) == 1
        first, second = (m for m in smtp.handler.datas)
        ids = [
            line for line in (first, second) for line in line.splitlines() if b"Message-ID" in line
        ]
        assert len(ids) == 2
        assert ids[0] == ids[1]


async def test_550_for_every_recipient_is_permanent() -> None:
    async with SmtpReceiver() as smtp:
        smtp.handler.refuse(ALICE, "550 5.1.1 no such user")
        smtp.handler.refuse(BOB, "550 5.1.1 no such user")
        with pytest.raises(SinkError) as info:
            await make(smtp.port, to=(ALICE, BOB)).send([delivery("mail")])
        assert not info.value.retryable
        assert not smtp.handler.datas


async def test_550_for_one_of_two_delivers_to_the_other_once(
    logs: list[dict[str, Any]],
) -> None:
    async with SmtpReceiver() as smtp:
        smtp.handler.refuse(BOB, "550 5.1.1 no such user")
        await make(smtp.port, to=(ALICE, BOB)).send([delivery("mail")])  # no error: no retry
        assert [m.rcpt_tos for m in smtp.handler.mails] == [(ALICE,)]
    refused = [e for e in logs if e["event"] == "email_recipient_refused"]
    assert len(refused) == 1
    assert refused[0]["recipient"] == BOB
    assert refused[0]["code"] == 550
    assert refused[0]["retry"] is False


async def test_451_for_one_of_two_retries_only_that_one() -> None:
    async with SmtpReceiver() as smtp:
        smtp.handler.refuse(BOB, "451 4.2.1 mailbox busy")
        sink = make(smtp.port, to=(ALICE, BOB))
        batch = [delivery("mail")]
        with pytest.raises(SinkError) as info:
            await sink.send(batch)
        assert info.value.retryable
        assert info.value.memo is not None
        assert ALICE in info.value.memo
        await sink.send(retried(batch, info.value.memo))
        assert [m.rcpt_tos for m in smtp.handler.mails] == [(ALICE,), (BOB,)]
        # a third attempt with everyone done sends nothing
        await sink.send(retried(batch, '{"accepted": ["alice@example.com", "bob@example.com"]}'))
        assert len(smtp.handler.mails) == 2


async def test_memo_of_a_different_batch_does_not_skip_anyone() -> None:
    async with SmtpReceiver() as smtp:
        sink = make(smtp.port, to=(ALICE, BOB))
        done_for_one = delivery("mail", memo='{"accepted": ["alice@example.com"]}')
        fresh = delivery("mail", pair="KZT/USD", row=2)
        await sink.send([done_for_one, fresh])
        assert sorted(smtp.handler.mails[0].rcpt_tos) == [ALICE, BOB]


async def test_starttls_required_but_not_offered_sends_nothing(ca: trustme.CA) -> None:
    async with SmtpReceiver("plain", credentials=("user", "pw-123456")) as smtp:
        sink = make(smtp.port, tls="starttls", username="user", password=SecretStr("pw-123456"))
        with pytest.raises(SinkError) as info:
            await sink.send([delivery("mail")])
        assert info.value.retryable  # a stripped STARTTLS must not silence an alert for good
        assert "STARTTLS" in str(info.value)
        assert smtp.handler.logins == []
        assert smtp.handler.mail_froms == []
        assert smtp.handler.datas == []


async def test_starttls_with_a_trusted_certificate(
    ca: trustme.CA, client_tls: ssl.SSLContext
) -> None:
    async with SmtpReceiver("starttls", ca=ca, credentials=("user", "pw-123456")) as smtp:
        sink = make(
            smtp.port,
            tls="starttls",
            tls_context=client_tls,
            username="user",
            password=SecretStr("pw-123456"),
        )
        await sink.send([delivery("mail")])
        (mail,) = smtp.handler.mails
        assert mail.tls
        assert smtp.handler.logins == [("user", True)]


async def test_starttls_with_an_untrusted_certificate_is_retryable(ca: trustme.CA) -> None:
    async with SmtpReceiver("starttls", ca=ca) as smtp:
        with pytest.raises(SinkError) as info:
            await make(smtp.port, tls="starttls").send([delivery("mail")])  # system trust store
        assert info.value.retryable
        assert "TLS" in str(info.value)
        assert smtp.handler.mail_froms == []


async def test_implicit_tls(ca: trustme.CA, client_tls: ssl.SSLContext) -> None:
    async with SmtpReceiver("implicit", ca=ca, credentials=("user", "pw-123456")) as smtp:
        sink = make(
            smtp.port,
            tls="implicit",
            tls_context=client_tls,
            username="user",
            password=SecretStr("pw-123456"),
        )
        await sink.send([delivery("mail")])
        (mail,) = smtp.handler.mails
        assert mail.tls


async def test_bad_credentials_are_permanent() -> None:
    async with SmtpReceiver(credentials=("user", "right")) as smtp:
        sink = make(smtp.port, username="user", password=SecretStr("wrong-pass-99"))
        with pytest.raises(SinkError) as info:
            await sink.send([delivery("mail")])
        assert not info.value.retryable
        assert "535" in str(info.value)
        assert "wrong-pass-99" not in str(info.value)
        assert smtp.handler.datas == []


async def test_header_injection_from_a_scraped_pair_label() -> None:
    async with SmtpReceiver() as smtp:
        d = delivery("mail", pair="TMT/USD\r\nBcc: x@y.example\r\n<!channel>")
        await make(smtp.port).send([d])
        (mail,) = smtp.handler.mails
        assert mail.rcpt_tos == (ALICE,)
        msg = mail.message
        assert msg["Bcc"] is None
        assert "x@y.example" not in (msg["To"] or "") + (msg["Cc"] or "")
        assert msg["Subject"].startswith(
            "[ticker-monitor] timesca: TMT/USD Bcc: x@y.example <!channel>"
        )
        assert b"\r\nBcc:" not in mail.content.split(b"\r\n\r\n", 1)[0]


async def test_refused_connection_and_timeout_are_retryable() -> None:
    with pytest.raises(SinkError) as info:
        await make(refused_port()).send([delivery("mail")])
    assert info.value.retryable
    assert "connection failed" in str(info.value)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never greets; ends when the client gives up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(SinkError) as info:
            await make(port, timeout=0.3).send([delivery("mail")])
        assert info.value.retryable
        assert "timed out" in str(info.value)
    finally:
        server.close()


def test_repr_shows_no_password() -> None:
    sink = make(25, username="user", password=SecretStr("pw-123456"))
    assert "pw-123456" not in repr(sink)
    assert "127.0.0.1" in repr(sink)
