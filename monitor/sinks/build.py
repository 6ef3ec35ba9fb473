"""Build the configured sinks, and the sample delivery that ``ticker-monitor test-sink`` sends.

``build_sinks`` is called once by the composition root. The HTTP sinks (Slack, webhook) share the
given ``httpx.AsyncClient`` (the caller closes it); each sink's ``aclose`` releases what the sink
itself holds. A sink that cannot be built (Apprise not installed, an Apprise URL it does not
understand) raises ``ConfigError`` naming ``sinks.NAME``; sinks built before it are closed.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import TextIO

import httpx

from monitor import settings
from monitor.models import Delivery, Event, EventKind, Reading, dedup_key
from monitor.settings import SinkConfig
from monitor.sinks import Sink
from monitor.sinks.apprise import AppriseSink
from monitor.sinks.console import ConsoleSink
from monitor.sinks.email import EmailSink
from monitor.sinks.file import FileSink
from monitor.sinks.slack import SlackSink
from monitor.sinks.webhook import WebhookSink


def build_sink(
    name: str,
    config: SinkConfig,
    *,
    http: httpx.AsyncClient,
    stdout: TextIO | None = None,
    smtp_tls_context: ssl.SSLContext | None = None,
) -> Sink:
    """One sink from its ``[sinks.NAME]`` configuration."""
    if isinstance(config, settings.ConsoleSink):
        return ConsoleSink(name, config, stream=stdout)
    if isinstance(config, settings.FileSink):
        return FileSink(name, config)
    if isinstance(config, settings.SlackSink):
        return SlackSink(name, config, http=http)
    if isinstance(config, settings.EmailSink):
        return EmailSink(name, config, tls_context=smtp_tls_context)
    if isinstance(config, settings.WebhookSink):
        return WebhookSink(name, config, http=http)
    return AppriseSink(name, config)


def build_sinks(
    configs: Mapping[str, SinkConfig],
    *,
    http: httpx.AsyncClient,
    stdout: TextIO | None = None,
    smtp_tls_context: ssl.SSLContext | None = None,
) -> dict[str, Sink]:
    """Every configured sink by name.

    ``stdout`` is the console sinks' stream (default: ``sys.stdout`` at write time);
    ``smtp_tls_context`` replaces the default, system-trusting TLS context of email sinks (tests).
    """
    built: dict[str, Sink] = {}
    try:
        for name, config in configs.items():
            built[name] = build_sink(
                name, config, http=http, stdout=stdout, smtp_tls_context=smtp_tls_context
            )
    except BaseException:
        for sink in built.values():
            _release(sink)
        raise
    return built


def _release(sink: Sink) -> None:
    # Building is synchronous; the only resource a half-built set holds synchronously is a log
    # filter (the shared HTTP client belongs to the caller).
    guard = getattr(sink, "_guard", None)
    if guard is not None:
        guard.remove()


def sample_delivery(sink_name: str, now: datetime) -> Delivery:
    """A realistic delivery for ``ticker-monitor test-sink NAME``: TMT/USD 0% → -0.14%."""
    event = Event(
        kind=EventKind.CHANGE_PCT_CHANGED,
        target="timesca",
        pair="TMT/USD",
        old=Reading(Decimal("0.28575"), Decimal("0")),
        new=Reading(Decimal("0.28575"), Decimal("-0.14")),
        observed_at=now,
        page_date=now.date(),
        source_url="https://timesca.com/",
        detail="sample alert sent by 'ticker-monitor test-sink'",
    )
    return Delivery(
        id=0,
        dedup_key=dedup_key(event, sink_name),
        sink=sink_name,
        event=event,
        check_id="test-sink",
        created_at=now,
    )
