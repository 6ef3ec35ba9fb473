"""The JSON webhook sink against a real HTTP receiver that verifies its signature."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from monitor.errors import SinkError
from monitor.models import Delivery, batch_key
from monitor.sinks import Sink
from monitor.sinks.webhook import EVENTS_PER_POST, WebhookConfig, WebhookSink
from tests.receivers import (
    HttpReceiver,
    Reply,
    batch_of,
    checks_of,
    delivery,
    refused_port,
    retried,
)

SECRET = "whsec-shared-Q7"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def make(url: str, http: httpx.AsyncClient, **extra: Any) -> WebhookSink:
    config = WebhookConfig(type="webhook", url=SecretStr(url), timeout=2.0, **extra)
    return WebhookSink("hook", config, http=http)


async def test_signed_post_verified_by_the_receiver(http: httpx.AsyncClient) -> None:
    async with HttpReceiver(secret=SECRET.encode()) as rx:
        sink = make(
            rx.url("/in"),
            http,
            secret=SecretStr(SECRET),
            headers={
                "Authorization": SecretStr("Bearer hdr-tok"),
                "X-Signature-256": SecretStr("x"),
            },
        )
        assert isinstance(sink, Sink)
        batch = batch_of(2, "hook")
        await sink.send(batch)
        (request,) = rx.requests
        assert request.signature_valid is True
        assert request.headers["content-type"] == "application/json"
        assert request.headers["authorization"] == "Bearer hdr-tok"
        assert request.headers["x-ticker-monitor-delivery"] == batch_key(
            [d.dedup_key for d in batch]
        )
        body = request.json()
        assert body["version"] == 1
        assert body["title"] == "timesca: P00/USD ▲, P01/USD ▲"
        assert len(body["text"].splitlines()) == 2
        first = body["events"][0]
        assert first == {
            **batch[0].event.to_json(),
            "dedup_id": batch[0].short_id,
            "dedup_key": batch[0].dedup_key,
        }
        assert first["new"] == {"rate": "1.001", "change_pct": "0.01"}
        await sink.aclose()


async def test_a_wrong_secret_fails_verification(http: httpx.AsyncClient) -> None:
    async with HttpReceiver(secret=b"the receiver's secret") as rx:
        sink = make(rx.url("/in"), http, secret=SecretStr("another secret"))
        with pytest.raises(SinkError) as info:
            await sink.send([delivery("hook")])
        assert not info.value.retryable  # 401
        assert rx.requests[0].signature_valid is False
        await sink.aclose()


async def test_unsigned_post_has_no_signature(http: httpx.AsyncClient) -> None:
    async with HttpReceiver() as rx:
        rx.answer(Reply(204, b""))
        sink = make(rx.url("/in"), http)
        await sink.send([delivery("hook")])  # any 2xx, any body
        assert "x-signature-256" not in rx.requests[0].headers
        await sink.aclose()


@pytest.mark.parametrize(
    ("reply", "retryable", "retry_after"),
    [
        (Reply(400, "bad request"), False, None),
        (Reply(404, "Cannot POST /in/tok-77"), False, None),
        (Reply(301, "", {"Location": "http://example.invalid/"}), False, None),
        (Reply(429, "slow down", {"Retry-After": "7"}), True, 7.0),
        (Reply(500, "oops"), True, None),
        (Reply(502, ""), True, None),
    ],
)
async def test_classification(
    http: httpx.AsyncClient, reply: Reply, retryable: bool, retry_after: float | None
) -> None:
    async with HttpReceiver() as rx:
        rx.answer(reply)
        sink = make(rx.url("/in/tok-77"), http)
        with pytest.raises(SinkError) as info:
            await sink.send([delivery("hook")])
        assert info.value.retryable is retryable
        assert info.value.retry_after == retry_after
        assert "tok-77" not in str(info.value)  # an echoed path is the URL: redacted
        assert len(rx.requests) == 1  # no redirect followed
        await sink.aclose()


async def test_refused_connection_is_retryable(http: httpx.AsyncClient) -> None:
    sink = make(f"http://127.0.0.1:{refused_port()}/in", http)
    with pytest.raises(SinkError) as info:
        await sink.send([delivery("hook")])
    assert info.value.retryable
    await sink.aclose()


async def test_repr_shows_no_secret() -> None:
    sink = WebhookSink(
        "hook",
        WebhookConfig(
            type="webhook",
            url=SecretStr("https://h.example/in/tok-77"),
            secret=SecretStr(SECRET),
            headers={"Authorization": SecretStr("Bearer hdr-tok")},
        ),
    )
    text = repr(sink)
    for secret in ("tok-77", SECRET, "hdr-tok"):
        assert secret not in text
    await sink.aclose()


async def test_a_header_httpx_cannot_send_is_permanent(http: httpx.AsyncClient) -> None:
    async with HttpReceiver() as rx:
        for value in ("line\r\nX-Injected: 1", "sécret-€"):
            sink = make(rx.url("/in"), http, headers={"X-Token": SecretStr(value)})
            with pytest.raises(SinkError) as info:
                await sink.send([delivery("hook")])
            assert not info.value.retryable
            assert value not in str(info.value)
            await sink.aclose()
        assert rx.requests == []


async def test_the_delivery_id_names_the_whole_batch(http: httpx.AsyncClient) -> None:
    """A rate-limited webhook sends everything due: a batch that grew on a retry must not reuse
    the first batch's id, or a receiver that drops redeliveries by it drops the new events."""
    async with HttpReceiver() as rx:
        sink = make(rx.url("/in"), http)
        batch = batch_of(3, "hook")
        await sink.send(batch[:1])
        await sink.send(batch[:2])  # the first row again, now with a second behind it
        await sink.send(batch[:2])  # the same batch again: the same id
        ids = [r.headers["x-ticker-monitor-delivery"] for r in rx.requests]
        assert ids[0] == batch[0].dedup_key  # one event: its own dedup key
        assert ids[1] != ids[0]
        assert ids[1].startswith("digest-")
        assert ids[2] == ids[1]
        await sink.aclose()


async def test_many_checks_go_in_few_posts_of_whole_checks(http: httpx.AsyncClient) -> None:
    """One send carries everything due: checks share a post up to EVENTS_PER_POST events, a
    check is never cut in two, and every post is signed and named by its own events."""
    batch = checks_of([30, 30, 30, 30, 150, 10])
    async with HttpReceiver(secret=SECRET.encode()) as rx:
        sink = make(rx.url("/in"), http, secret=SecretStr(SECRET))
        assert sink.bulk
        await sink.send(batch)
        bodies = [r.json() for r in rx.requests]
        assert [len(b["events"]) for b in bodies] == [90, 30, 150, 10]
        assert EVENTS_PER_POST == 100
        assert all(r.signature_valid for r in rx.requests)
        sent = [e["dedup_key"] for b in bodies for e in b["events"]]
        assert sent == [d.dedup_key for d in batch]
        for request, body in zip(rx.requests, bodies, strict=True):
            keys = [e["dedup_key"] for e in body["events"]]
            assert request.headers["x-ticker-monitor-delivery"] == batch_key(keys)
        assert [{e["target"] for e in b["events"]} for b in bodies] == [
            {"t0", "t1", "t2"},
            {"t3"},
            {"t4"},
            {"t5"},
        ]
        assert bodies[0]["title"] == "t0: P00/USD ▲, P01/USD ▲ (+88 more)"
        await sink.aclose()


async def test_a_half_sent_burst_retries_only_what_was_not_accepted(
    http: httpx.AsyncClient,
) -> None:
    batch = checks_of([60, 60, 60])
    async with HttpReceiver() as rx:
        rx.answer(Reply(200, "ok"), Reply(503, "busy"))
        sink = make(rx.url("/in"), http)
        reported: list[Delivery] = []

        async def on_accepted(part: Sequence[Delivery]) -> None:
            reported.extend(part)

        with pytest.raises(SinkError) as info:
            await sink.send(batch, on_accepted)
        assert info.value.retryable
        assert reported == batch[:60]
        await sink.send(retried(batch, info.value.memo))
        posted = [[e["dedup_key"] for e in r.json()["events"]] for r in rx.requests]
        assert posted[2:] == [
            [d.dedup_key for d in batch[60:120]],
            [d.dedup_key for d in batch[120:]],
        ]
        await sink.aclose()
