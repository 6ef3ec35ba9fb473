"""The Apprise sink, through Apprise's own ``json://`` plugin, against a local HTTP receiver."""

from __future__ import annotations

import sys

import pytest
from pydantic import SecretStr

from monitor.errors import ConfigError, SinkError
from monitor.models import Delivery
from monitor.sinks import Sink
from monitor.sinks.apprise import AppriseConfig, AppriseSink
from tests.receivers import HttpReceiver, Reply, delivery, refused_port


def make(*urls: str, **extra: object) -> AppriseSink:
    config = AppriseConfig.model_validate(
        {"type": "apprise", "urls": [SecretStr(u) for u in urls], "timeout": 5.0, **extra}
    )
    return AppriseSink("notify", config)


async def test_json_url_posts_title_and_body() -> None:
    async with HttpReceiver() as rx:
        sink = make(f"json://127.0.0.1:{rx.port}/apprise-in")
        assert isinstance(sink, Sink)
        d = delivery("notify")
        await sink.send([d])
        (request,) = rx.requests
        assert (request.method, request.path) == ("POST", "/apprise-in")
        body = request.json()
        assert body["title"] == "timesca: TMT/USD ▼ 0.28575, change -0.14%"
        assert d.short_id in body["message"]
        await sink.aclose()


async def test_failing_server_is_retryable() -> None:
    async with HttpReceiver() as rx:
        rx.answer(Reply(500, "down"))
        sink = make(f"json://127.0.0.1:{rx.port}/apprise-in")
        with pytest.raises(SinkError) as info:
            await sink.send([delivery("notify")])
        assert info.value.retryable
        await sink.aclose()


async def test_only_the_failed_url_is_retried() -> None:
    async with HttpReceiver() as good, HttpReceiver() as bad:
        bad.answer(Reply(503, "busy"))
        sink = make(f"json://127.0.0.1:{good.port}/a", f"json://127.0.0.1:{bad.port}/b")
        d = delivery("notify")
        with pytest.raises(SinkError) as info:
            await sink.send([d])
        assert info.value.retryable
        assert info.value.memo is not None
        assert "127.0.0.1" not in info.value.memo  # ids, never URLs
        again = Delivery(
            d.id, d.dedup_key, d.sink, d.event, d.check_id, 1, d.created_at, info.value.memo
        )
        await sink.send([again])
        assert (len(good.requests), len(bad.requests)) == (1, 2)
        await sink.aclose()


async def test_refused_connection_is_retryable() -> None:
    sink = make(f"json://127.0.0.1:{refused_port()}/x")
    with pytest.raises(SinkError) as info:
        await sink.send([delivery("notify")])
    assert info.value.retryable
    await sink.aclose()


def test_unknown_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        make("nonsense-scheme://token-abc123@host/")
    assert "sinks.notify.urls[0]" in str(info.value)
    assert "token-abc123" not in str(info.value)


def test_missing_apprise_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # import apprise -> ImportError
    with pytest.raises(ConfigError) as info:
        make("json://127.0.0.1/x")
    assert "pip install 'ticker-monitor[apprise]'" in str(info.value)


async def test_repr_shows_no_url() -> None:
    sink = make("json://user:apprise-pass-1@127.0.0.1/apprise-path-1")
    assert "apprise-pass-1" not in repr(sink)
    assert "apprise-path-1" not in repr(sink)
    await sink.aclose()
