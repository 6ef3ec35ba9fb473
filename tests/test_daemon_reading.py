"""The real daemon reading the sources of issue 7 from a real page server on loopback: a
windows-1251 page whose charset only the HTTP header declares, read with a Cyrillic pattern; a JSON
feed read with a json_query; a table page whose numbers keep the page's text in stored events.
Invalid selectors and queries are configuration errors before anything runs.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import structlog

from monitor.app import build_app
from monitor.daemon import Daemon
from monitor.settings import load_settings
from tests.daemon_harness import alerts, outbox_rows, run_once, write_config
from tests.pages import (
    BANK_PATTERN,
    BANK_RATES,
    FEED_QUERY,
    SEED_QUOTES,
    bank_html,
    feed_json,
    ticker_html,
)
from tests.servers import PageServer, ThreadedPageServer
from tests.test_cli import cli, one_line_error

pytestmark = pytest.mark.slow

CP1251 = "text/html; charset=windows-1251"
BANK_TARGET = f"""pattern = '{BANK_PATTERN}'
quote_currency = "RUB"
decimal_separator = ","
"""


def kinds(path: Path) -> list[tuple[str, str | None]]:
    return [(a["kind"], a["pair"]) for a in alerts(path)]


def stored_snapshot(db: Path) -> dict[str, Any]:
    with closing(sqlite3.connect(db)) as conn:
        (state,) = conn.execute("SELECT state_json FROM targets").fetchone()
    snapshot: dict[str, Any] = json.loads(state)["snapshot"]
    return snapshot


def test_a_windows_1251_page_declared_by_its_header_alerts_on_a_change(tmp_path: Path) -> None:
    page = bank_html().encode("cp1251")
    assert b"charset" not in page
    with ThreadedPageServer(page, content_type=CP1251) as server:
        config = write_config(tmp_path, server.url, target_extra=BANK_TARGET)
        first = run_once(config)
        assert first.returncode == 0, first.stderr
        assert alerts(tmp_path / "audit.jsonl") == []  # the baseline
        quotes = stored_snapshot(tmp_path / "state.db")["quotes"]
        assert [(q["pair"], q["rate"]) for q in quotes] == [
            ("USD/RUB", "89.50"),
            ("EUR/RUB", "97.13"),
            ("KZT/RUB", "0.1712"),
        ]
        server.set_page(bank_html({**BANK_RATES, "USD": "90,10"}).encode("cp1251"))
        assert run_once(config).returncode == 0
    for sink in ("audit", "audit2"):
        (alert,) = alerts(tmp_path / f"{sink}.jsonl")
        assert (alert["kind"], alert["pair"]) == ("rate_changed", "USD/RUB")
        assert (alert["old"]["rate"], alert["new"]["rate"]) == ("89.50", "90.10")


def test_without_the_header_the_same_page_is_a_parse_failure(tmp_path: Path) -> None:
    page = bank_html().encode("cp1251")
    with ThreadedPageServer(page, content_type="text/html") as server:
        config = write_config(tmp_path, server.url, target_extra=BANK_TARGET)
        assert run_once(config).returncode == 3  # run --once: a page held no ticker
    assert kinds(tmp_path / "audit.jsonl") == [("parse_failed", None)]


def test_a_json_feed_reads_exactly_and_a_change_alerts(tmp_path: Path) -> None:
    with ThreadedPageServer(feed_json(), content_type="application/json") as server:
        config = write_config(tmp_path, server.url, target_extra=f"json_query = '{FEED_QUERY}'")
        assert run_once(config).returncode == 0
        quotes = stored_snapshot(tmp_path / "state.db")["quotes"]
        assert [(q["pair"], q["rate"], q["change_pct"]) for q in quotes] == [
            (pair, rate, change) for pair, rate, change in SEED_QUOTES
        ]
        moved = [(p, "0.09700" if p == "TJS/USD" else r, c) for p, r, c in SEED_QUOTES]
        server.set_page(feed_json(moved))
        assert run_once(config).returncode == 0
        server.set_page('{"status": "maintenance"}')  # the API answers, but with no rates
        assert run_once(config).returncode == 3  # run --once: a page held no ticker
    for sink in ("audit", "audit2"):
        assert kinds(tmp_path / f"{sink}.jsonl") == [
            ("rate_changed", "TJS/USD"),
            ("parse_failed", None),
        ]
        change = alerts(tmp_path / f"{sink}.jsonl")[0]
        assert (change["old"]["rate"], change["new"]["rate"]) == ("0.09650", "0.09700")
    failure = alerts(tmp_path / "audit.jsonl")[1]
    assert "json_query matched nothing" in failure["detail"]


def test_stored_events_keep_the_pages_text(tmp_path: Path) -> None:
    def table(change: str) -> str:
        quotes = [("USD/UZS", "12,850.50", change), ("KGS/USD", "0.01144", "0")]
        return ticker_html(quotes, repeats=1, form="rows", filler_kb=20)

    with ThreadedPageServer(table("0")) as server:
        config = write_config(tmp_path, server.url)
        assert run_once(config).returncode == 0
        server.set_page(table("+0.12"))
        assert run_once(config).returncode == 0
    rows = outbox_rows(tmp_path / "state.db")
    assert rows
    for row in rows:
        event = json.loads(row["event_json"])
        assert event["new"] == {
            "rate": "12850.50",
            "change_pct": "0.12",
            "rate_text": "12,850.50",
            "change_text": "+0.12",
        }
        assert event["old"]["rate_text"] == "12,850.50"
    quotes = stored_snapshot(tmp_path / "state.db")["quotes"]
    assert quotes[0]["change_text"] == "+0.12"


@pytest.mark.parametrize(
    ("target_extra", "problem"),
    [
        ("selector = '###'", "targets[0].selector: invalid CSS selector '###'"),
        ("json_query = 'data.rates['", "targets[0].json_query: invalid JMESPath expression"),
        ("json_query = 'upper(a)'", "targets[0].json_query: unknown JMESPath function upper()"),
        ("json_query = 'a'\nselector = 'p'", "targets[0].selector: not used with json_query"),
    ],
)
def test_invalid_selectors_and_queries_stop_validate_and_start_up(
    tmp_path: Path, target_extra: str, problem: str
) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/", target_extra=target_extra)
    for command in ("validate", "run"):
        line = one_line_error(cli(command, "--config", str(config), cwd=tmp_path), 2)
        assert line.startswith("ticker-monitor: config error: " + problem), line
    assert not (tmp_path / "state.db").exists()


async def test_a_pattern_that_leaves_items_unread_is_logged(tmp_path: Path) -> None:
    page = "<html><body><marquee>USD 87.45 EUR 95.10 RUB 1.05</marquee></body></html>"
    target = "pattern = '(?P<base>USD|EUR) (?P<rate>[0-9.]+)'\nquote_currency = \"KGS\""
    async with PageServer(page) as server:
        config = write_config(tmp_path, server.url, sinks=("audit",), target_extra=target)
        with structlog.testing.capture_logs() as logs:
            results = await Daemon(await build_app(load_settings(config))).run_once()
    assert [r.outcome for r in results] == ["observed"]
    (warning,) = [e for e in logs if e["event"] == "ticker_partly_read"]
    assert warning["log_level"] == "warning"
    assert "left 'RUB 1.05' unread" in warning["detail"]
