"""Logging: one pipeline for structlog and stdlib loggers, JSON or console, secrets redacted."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import structlog

from monitor.logs import REDACTED, Redactor, bind_check, configure_logging, unbind_check

SECRET = "hunter2-very-secret"
WEBHOOK = "https://hooks.slack.com/services/T0ABC/B0DEF/abcdefXYZ123"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging(level="info", fmt="json", secrets=[SECRET], stream=out, cache=False)
    yield out
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_structlog_events_are_json_with_fields_and_context(stream: io.StringIO) -> None:
    bind_check("timesca", "abc123")
    try:
        structlog.get_logger("monitor.test").info("check_done", events=2)
    finally:
        unbind_check()
    structlog.get_logger("monitor.test").info("after_check")
    first, second = lines(stream)
    assert first["event"] == "check_done"
    assert first["events"] == 2
    assert first["target"] == "timesca"
    assert first["check_id"] == "abc123"
    assert first["level"] == "info"
    assert str(first["timestamp"]).endswith("Z")
    assert "target" not in second


def test_times_and_decimals_render_as_text(stream: io.StringIO) -> None:
    moment = datetime(2025, 5, 16, 8, 30, tzinfo=UTC)
    structlog.get_logger("monitor.test").info("scheduled", at=moment, rate=Decimal("0.00008"))
    (entry,) = lines(stream)
    assert entry["at"] == "2025-05-16T08:30:00+00:00"
    assert entry["rate"] == "0.00008"


def test_console_logs_show_times_as_iso_8601_not_their_repr() -> None:
    out = io.StringIO()
    configure_logging(level="info", fmt="console", stream=out, cache=False)
    try:
        moment = datetime(2025, 5, 16, 8, 30, tzinfo=UTC)
        structlog.get_logger("monitor.test").info("scheduled", at=moment, rate=Decimal("8E-8"))
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    text = out.getvalue()
    assert "at=2025-05-16T08:30:00+00:00" in text
    assert "rate=0.00000008" in text
    assert "datetime.datetime" not in text
    assert "Decimal(" not in text


def test_stdlib_loggers_share_the_pipeline(stream: io.StringIO) -> None:
    logging.getLogger("apscheduler.scheduler").warning("job %s missed", "t1")
    (entry,) = lines(stream)
    assert entry["event"] == "job t1 missed"
    assert entry["logger"] == "apscheduler.scheduler"
    assert entry["level"] == "warning"


def test_levels_filter(stream: io.StringIO) -> None:
    structlog.get_logger("monitor.test").debug("noise")
    logging.getLogger("httpx").info("HTTP Request: GET ...")
    assert lines(stream) == []


def test_secrets_and_webhook_paths_are_redacted_everywhere(stream: io.StringIO) -> None:
    log = structlog.get_logger("monitor.test")
    log.warning("sink_failed", error=f"POST {WEBHOOK} failed", detail={"password": SECRET})
    logging.getLogger("httpx").warning("HTTP Request: POST %s", WEBHOOK)
    try:
        {}["missing " + SECRET]  # raises a KeyError whose text holds the secret
    except KeyError:
        log.exception("crashed")
    text = stream.getvalue()
    assert SECRET not in text
    assert "abcdefXYZ123" not in text
    assert "B0DEF" not in text
    assert text.count(REDACTED) >= 4
    assert "sink_failed" in text


def test_console_format_for_terminals() -> None:
    out = io.StringIO()
    configure_logging(level="info", fmt="console", secrets=[SECRET], stream=out, cache=False)
    try:
        structlog.get_logger("monitor.test").info("check_done", target="t", note=SECRET)
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    text = out.getvalue()
    assert "check_done" in text
    assert "target=t" in text
    assert SECRET not in text
    assert not text.lstrip().startswith("{")


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("postgresql://monitor:pa55w0rd@db:5432/x", "postgresql://[REDACTED]@db:5432/x"),
        ("https://example.org/hook?token=abc&x=1", "https://example.org/hook?[REDACTED]&x=1"),
        ("nothing to see", "nothing to see"),
    ],
)
def test_redactor_patterns(text: str, kept: str) -> None:
    assert Redactor().scrub(text) == kept


def test_short_values_are_not_treated_as_secrets() -> None:
    assert Redactor(["abc"]).scrub("abc abc") == "abc abc"
