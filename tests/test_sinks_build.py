"""Building sinks from settings through the registry, and the no-secret-anywhere guarantee."""

from __future__ import annotations

import io
import logging
import traceback
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import structlog
from pydantic import TypeAdapter

from monitor.errors import ConfigError, SinkError
from monitor.redact import REDACTED
from monitor.sinks import Sink, SinkDeps
from monitor.sinks.apprise import AppriseSink
from monitor.sinks.console import ConsoleSink
from monitor.sinks.email import EmailSink
from monitor.sinks.file import FileSink
from monitor.sinks.registry import SINK_TYPES, SinkConfig, build_sinks
from monitor.sinks.slack import SlackSink
from monitor.sinks.webhook import WebhookSink
from tests.receivers import HttpReceiver, Reply, SmtpReceiver, delivery, refused_port

CONFIG = TypeAdapter(dict[str, SinkConfig])


async def test_build_every_kind(tmp_path: Path) -> None:
    configs = CONFIG.validate_python(
        {
            "tty": {"type": "console"},
            "audit": {"type": "file", "path": str(tmp_path / "a.jsonl")},
            "team": {"type": "slack", "webhook_url": "https://hooks.example/services/T/B/tok-1"},
            "mail": {
                "type": "email",
                "host": "127.0.0.1",
                "tls": "none",
                "from": "m@example.com",
                "to": ["a@example.com"],
            },
            "hook": {"type": "webhook", "url": "https://h.example/tok-2", "min_interval": "2s"},
            "notify": {"type": "apprise", "urls": ["json://127.0.0.1/tok-3"]},
        }
    )
    out = io.StringIO()
    async with httpx.AsyncClient() as http:
        sinks = await build_sinks(configs, SinkDeps(http=http, stdout=out))
        kinds = {name: type(sink) for name, sink in sinks.items()}
        assert kinds == {
            "tty": ConsoleSink,
            "audit": FileSink,
            "team": SlackSink,
            "mail": EmailSink,
            "hook": WebhookSink,
            "notify": AppriseSink,
        }
        for name, sink in sinks.items():
            assert isinstance(sink, Sink)
            assert sink.name == name
            assert sink.digest is True
            assert "tok-" not in repr(sink)
        assert sinks["team"].min_interval == 1.0
        assert sinks["hook"].min_interval == 2.0
        await sinks["tty"].send([delivery("tty")])
        assert "TMT/USD" in out.getvalue()
        for sink in sinks.values():
            await sink.aclose()


SECRETS = (
    "slack-leak-token-1",
    "T0LEAKXX",
    "smtp-leak-pass-2",
    "webhook-leak-url-3",
    "webhook-leak-hmac-4",
    "webhook-leak-hdr-5",
    "apprise-leak-pass-6",
    "apprise-leak-path-7",
)
THIRD_PARTY = ("httpx", "httpcore", "apprise", "urllib3", "aiosmtplib", "asyncio")


async def test_no_secret_reaches_any_log_error_or_repr(caplog: pytest.LogCaptureFixture) -> None:
    for name in ("", *THIRD_PARTY):
        caplog.set_level(logging.DEBUG, logger=name or None)
    seen: list[str] = []
    slack_path = "/services/T0LEAKXX/B0LEAKXX/slack-leak-token-1"
    hook_path = "/hook/webhook-leak-url-3"
    apprise_path = "/apprise-leak-path-7"
    dead = refused_port()
    async with (
        HttpReceiver() as web,
        SmtpReceiver(credentials=("user", "the-right-one")) as smtp,
        httpx.AsyncClient() as http,
    ):
        # every answer echoes the request path, as many error pages do
        web.answer(*(Reply(500, f"Cannot POST {p}") for p in (slack_path, hook_path)))
        web.answer(Reply(500, f"no such endpoint {apprise_path}"))
        configs = CONFIG.validate_python(
            {
                "slack": {"type": "slack", "webhook_url": web.url(slack_path), "timeout": 2},
                "slack-dead": {
                    "type": "slack",
                    "webhook_url": f"http://127.0.0.1:{dead}{slack_path}",
                },
                "mail": {
                    "type": "email",
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "tls": "none",
                    "username": "user",
                    "password": "smtp-leak-pass-2",
                    "from": "m@example.com",
                    "to": ["a@example.com"],
                },
                "mail-dead": {
                    "type": "email",
                    "host": "127.0.0.1",
                    "port": dead,
                    "tls": "none",
                    "username": "user",
                    "password": "smtp-leak-pass-2",
                    "from": "m@example.com",
                    "to": ["a@example.com"],
                },
                "hook": {
                    "type": "webhook",
                    "url": web.url(hook_path),
                    "secret": "webhook-leak-hmac-4",
                    "headers": {"Authorization": "Bearer webhook-leak-hdr-5"},
                },
                "hook-dead": {
                    "type": "webhook",
                    "url": f"http://127.0.0.1:{dead}{hook_path}",
                    "secret": "webhook-leak-hmac-4",
                },
                "notify": {
                    "type": "apprise",
                    "urls": [f"json://user:apprise-leak-pass-6@127.0.0.1:{web.port}{apprise_path}"],
                },
                "notify-dead": {
                    "type": "apprise",
                    "urls": [f"json://user:apprise-leak-pass-6@127.0.0.1:{dead}{apprise_path}"],
                },
            }
        )
        with structlog.testing.capture_logs() as events:
            sinks = await build_sinks(configs, SinkDeps(http=http))
            for name in ("slack", "hook", "notify"):  # the order the scripted answers expect
                seen.append(repr(sinks[name]))
                with pytest.raises(SinkError) as info:
                    await sinks[name].send([delivery(name)])
                seen += _describe(info.value)
            for name in ("slack-dead", "mail", "mail-dead", "hook-dead", "notify-dead"):
                seen.append(repr(sinks[name]))
                with pytest.raises(SinkError) as info:
                    await sinks[name].send([delivery(name)])
                seen += _describe(info.value)
            for sink in sinks.values():
                await sink.aclose()
        # the wrong password really went out (aiosmtplib tries each AUTH mechanism in turn)
        assert smtp.handler.logins
        assert set(smtp.handler.logins) == {("user", False)}

    seen += [repr(event) for event in events]
    for record in caplog.records:
        seen += [record.getMessage(), repr(record.args), record.exc_text or ""]
        if record.exc_info:
            seen.append("".join(traceback.format_exception(*record.exc_info)))
    seen += [caplog.text]

    # the filters really saw the libraries' URL-bearing records
    assert any(r.name == "httpx" and REDACTED in r.getMessage() for r in caplog.records)
    assert any(r.name.startswith("apprise") for r in caplog.records)
    assert len(web.requests) == 3
    haystack = "\n".join(seen)
    for secret in SECRETS:
        assert secret not in haystack, f"{secret!r} leaked"


def _describe(exc: SinkError) -> list[str]:
    return [
        str(exc),
        repr(exc),
        exc.memo or "",
        "".join(traceback.format_exception(exc)),
    ]


async def test_logger_filters_are_removed_on_aclose() -> None:
    before = list(logging.getLogger("httpx").filters)
    configs: dict[str, Any] = CONFIG.validate_python(
        {"team": {"type": "slack", "webhook_url": "https://hooks.example/x/tok-9"}}
    )
    async with httpx.AsyncClient() as http:
        sinks = await build_sinks(configs, SinkDeps(http=http))
        assert len(logging.getLogger("httpx").filters) == len(before) + 1
        await sinks["team"].aclose()
    assert logging.getLogger("httpx").filters == before


def test_the_registry_knows_each_sink_type_by_its_own_name() -> None:
    for name, kind in SINK_TYPES.items():
        assert kind.name == name
        assert kind.config.model_fields["type"].annotation == Literal[name]
    # the settings' tagged union is made of exactly the registered models
    schema = CONFIG.json_schema()
    assert set(schema["additionalProperties"]["discriminator"]["mapping"]) == set(SINK_TYPES)


async def test_a_sink_that_cannot_be_built_closes_the_ones_built_before(tmp_path: Path) -> None:
    before = list(logging.getLogger("httpx").filters)
    configs = CONFIG.validate_python(
        {
            "team": {"type": "slack", "webhook_url": "https://hooks.example/x/tok-9"},
            "notify": {"type": "apprise", "urls": ["nonsense-scheme://x"]},
        }
    )
    async with httpx.AsyncClient() as http:
        with pytest.raises(ConfigError, match=r"sinks\.notify"):
            await build_sinks(configs, SinkDeps(http=http))
    assert logging.getLogger("httpx").filters == before
