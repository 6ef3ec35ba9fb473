"""Alerts end to end: the real daemon process, a real page server, a real Slack receiver and
aiosmtpd on 127.0.0.1.

The receivers run in the test's event loop, so the test waits with ``asyncio.sleep`` (never a
blocking sleep) while the daemon, a separate process, checks every second.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess, alerts, outbox_rows, page, write_config
from tests.receivers import HttpReceiver, Mail, SmtpReceiver
from tests.servers import Reply, ThreadedPageServer
from tests.test_cli import cli

pytestmark = pytest.mark.slow

BASE = {"TMT/USD": ("0.28575", "0")}
SLACK_PATH = "/services/T000/B000/e2e"


async def until(predicate: Callable[[], bool], seconds: float = 25) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


@pytest.fixture
async def slack() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver() as rx:
        yield rx


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpReceiver]:
    async with SmtpReceiver("plain") as rx:
        yield rx


def posts(rx: HttpReceiver) -> list[dict[str, Any]]:
    return [r.json() for r in rx.requests if r.path == SLACK_PATH]


def headers(rx: HttpReceiver) -> list[str]:
    return [p["blocks"][0]["text"]["text"] for p in posts(rx)]


def sections(payload: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]


def sinks_toml(slack: HttpReceiver, smtp: SmtpReceiver | None = None) -> str:
    text = f'[sinks.team]\ntype = "slack"\nwebhook_url = "{slack.url(SLACK_PATH)}"\n'
    text += 'min_interval = "200ms"\n'
    if smtp is not None:
        text += (
            f'[sinks.mail]\ntype = "email"\nhost = "127.0.0.1"\nport = {smtp.port}\n'
            'tls = "none"\nfrom = "ticker-monitor <alerts@example.org>"\n'
            'to = ["ops@example.org"]\n'
        )
    return text


async def stop(daemon: DaemonProcess) -> None:
    # the daemon may still be posting to our receivers while it stops: keep the loop running
    assert await asyncio.to_thread(daemon.terminate) == 0


async def test_two_pairs_moving_in_one_check_are_one_slack_post_with_a_line_each(
    tmp_path: Path, slack: HttpReceiver
) -> None:
    with ThreadedPageServer(page(BASE)) as server:
        config = write_config(tmp_path, server.url, sinks=("team",), extra=sinks_toml(slack))
        with DaemonProcess(config) as daemon:
            assert await until(lambda: len(server.requests) >= 2), daemon.logs()
            server.set_page(page({"TMT/USD": ("0.28550", "-0.14"), "KZT/USD": ("0.00197", "0.51")}))
            assert await until(lambda: len(posts(slack)) >= 1), daemon.logs()
            await asyncio.sleep(1.5)  # a few more checks: nothing else is sent
            await stop(daemon)
    (post,) = posts(slack)
    assert [b["type"] for b in post["blocks"]] == [
        "header",
        "section",
        "context",
        "section",
        "context",
    ]
    assert post["blocks"][0]["text"]["text"] == "timesca: KZT/USD ▲, TMT/USD ▼"
    assert sections(post) == [
        "▲ *KZT/USD* 0.00196 → 0.00197 (+0.51%), change -0% → 0.51%",
        "▼ *TMT/USD* 0.28575 → 0.28550 (-0.09%), change 0% → -0.14%",
    ]
    # four events (each pair's rate and percentage), four outbox rows, one post
    rows = outbox_rows(tmp_path / "state.db")
    assert sorted(json.loads(r["event_json"])["kind"] for r in rows) == [
        "change_pct_changed",
        "change_pct_changed",
        "rate_changed",
        "rate_changed",
    ]
    assert {r["status"] for r in rows} == {"sent"}


async def test_a_silenced_change_is_not_delivered_and_the_next_after_expire_is(
    tmp_path: Path, slack: HttpReceiver
) -> None:
    db = tmp_path / "state.db"
    with ThreadedPageServer(page(BASE)) as server:
        config = write_config(
            tmp_path, server.url, sinks=("team", "audit"), extra=sinks_toml(slack)
        )
        with DaemonProcess(config) as daemon:
            assert await until(lambda: len(server.requests) >= 2), daemon.logs()
            added = cli(
                "silence", "add", "--target", "timesca", "--for", "1h",
                "--comment", "site maintenance", "--config", str(config), cwd=tmp_path,
            )  # fmt: skip
            assert added.returncode == 0, added.stderr
            silence_id = added.stdout.strip()
            assert len(silence_id) == 8

            server.set_page(page({"TMT/USD": ("0.28575", "-0.14")}))
            assert await until(lambda: len(outbox_rows(db, "silenced")) == 2), daemon.logs()
            await asyncio.sleep(1.5)
            assert posts(slack) == []
            assert alerts(tmp_path / "audit.jsonl") == []
            silenced = outbox_rows(db, "silenced")
            assert {(r["sink"], r["silenced_by"]) for r in silenced} == {
                ("team", silence_id),
                ("audit", silence_id),
            }
            assert [e["event"] for e in daemon.events_named("alert_silenced")]

            expired = cli("silence", "expire", silence_id, "--config", str(config), cwd=tmp_path)
            assert expired.returncode == 0, expired.stderr
            server.set_page(page({"TMT/USD": ("0.28575", "0.2")}))
            assert await until(lambda: len(posts(slack)) >= 1), daemon.logs()
            await asyncio.sleep(1.0)
            await stop(daemon)
    (post,) = posts(slack)  # the silenced change is not sent after the fact
    assert sections(post) == ["▲ *TMT/USD* 0.28575, change -0.14% → 0.2%"]
    assert [a["new"]["change_pct"] for a in alerts(tmp_path / "audit.jsonl")] == ["0.2"]
    listing = cli("silence", "list", "--all", "--config", str(config), cwd=tmp_path)
    assert silence_id in listing.stdout
    assert "ended" in listing.stdout


async def test_an_outage_longer_than_repeat_interval_reminds_and_its_recovery_says_how_long(
    tmp_path: Path, slack: HttpReceiver, smtp: SmtpReceiver
) -> None:
    rules = (
        '[[rules]]\nname = "outages"\nevents = ["source_down", "source_recovered"]\n'
        'repeat_interval = "2s"\nsinks = ["team", "mail"]\n'
    )
    with ThreadedPageServer(page(BASE)) as server:
        config = write_config(
            tmp_path,
            server.url,
            sinks=("audit",),
            extra=rules + sinks_toml(slack, smtp),
            target_extra="down_after = 1",
        )
        with DaemonProcess(config) as daemon:
            assert await until(lambda: len(server.requests) >= 2), daemon.logs()
            server.default = Reply(503, body=b"maintenance")
            assert await until(
                lambda: any("still down" in h for h in headers(slack)), seconds=30
            ), (headers(slack), daemon.logs())
            server.default = None
            assert await until(lambda: any("is back" in h for h in headers(slack))), headers(slack)
            assert await until(
                lambda: any("is back" in str(m.message["Subject"]) for m in smtp.handler.mails)
            )
            await stop(daemon)
    titles = headers(slack)
    assert titles[0] == "timesca is down"
    reminders = [t for t in titles if t.startswith("timesca is still down after ")]
    assert reminders, titles
    back = [t for t in titles if t.startswith("timesca is back after ")]
    assert len(back) == 1, titles
    (recovery,) = [p for p in posts(slack) if sections(p)[0].startswith("*timesca* is back")]
    assert "failed check" in sections(recovery)[0]  # "(N failed checks)"
    subjects = [str(m.message["Subject"]) for m in smtp.handler.mails]
    assert subjects[0] == "[ticker-monitor] timesca is down"
    assert any(s.startswith("[ticker-monitor] timesca is still down after ") for s in subjects)
    (mail_back,) = [m for m in smtp.handler.mails if "is back" in str(m.message["Subject"])]
    assert str(mail_back.message["Subject"]).startswith("[ticker-monitor] timesca is back after ")
    assert _text(mail_back).count("failed check") == 1
    # the catch-all rule got one source_down (no reminders: it did not ask for them)
    kinds = [(a["kind"], a["reminder"]) for a in alerts(tmp_path / "audit.jsonl")]
    assert kinds == [("source_down", 0), ("source_recovered", 0)]


def _text(mail: Mail) -> str:
    part = mail.message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())
