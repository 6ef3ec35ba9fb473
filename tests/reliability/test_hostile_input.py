"""Hostile input: fuzzed configurations, fuzzed pages, and text crafted to ping a Slack channel or
forge a mail header.

- Configuration fuzzing (Hypothesis): any document either loads or fails with ``ConfigError``
  whose every line names a key; one that loads also builds and schedules (the old failure was a
  configuration that validated and then crashed at start). A sample goes through the real
  ``validate`` and ``run --once`` commands: exit 0 or 2, one line per problem, no traceback.
- Page fuzzing (Hypothesis): mutated marquees and random bytes through the daemon's whole check
  (fetch from a real server, parse, detect, route, commit, deliver): never an exception, every
  alert a well-formed record.
- Injection, through the real daemon: a server whose status line carries ``<!channel>``, a link
  and a ``Bcc:`` reaches Slack escaped and the mail's subject (via a ``title_template`` with
  ``$detail``) on one line, with no header and no recipient added.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Iterator
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.app import build_app
from monitor.daemon import Daemon
from monitor.errors import ConfigError
from monitor.models import EventKind
from monitor.settings import load_settings
from tests.daemon_harness import DaemonProcess, alerts, run_cli, wait_for
from tests.receivers import ThreadedSmtpReceiver
from tests.reliability.conftest import (
    SLACK_PATH,
    SMTP_PASSWORD,
    SMTP_USER,
    Sinks,
    log_problems,
    page_with,
    rate,
    record,
    write_config,
)
from tests.servers import Reply, ThreadedPageServer

# --- configuration fuzzing -------------------------------------------------------------------

DURATION_KEYS = {
    "monitor": ["grace_period", "history_retention"],
    "delivery": ["max_age", "backoff_initial", "backoff_max", "lease"],
    "target": ["interval", "jitter", "timeout", "down_after_time"],
    "rule": ["cooldown"],
}
NUMBER_KEYS = {
    "monitor": ["max_per_host", "max_concurrent_checks"],
    "delivery": ["max_attempts", "batch_size"],
    "target": ["retries", "down_after", "max_jump_pct", "max_bytes"],
    "rule": ["min_abs_change_pct", "above", "below", "min_move_pct"],
}
OTHER_KEYS = {
    "monitor": ["log_level", "log_format", "user_agent"],
    "delivery": [],
    "target": ["selector", "pattern", "quote_currency", "decimal_separator", "user_agent"],
    "rule": ["events", "pairs", "targets", "on_first_observation"],
}

nasty_numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.0, 1e18, 1e-9, 2**53 + 1, float("inf"), float("nan")]),
)
nasty_durations = st.one_of(
    nasty_numbers,
    st.from_regex(r"\A-?[0-9]{1,20}(\.[0-9]{0,6})?(ms|s|m|h|d|y|)\Z"),
    st.sampled_from(["", "1e18s", "inf", "nan", "30 s", "5m5s", "-0", "0ms", "366d", "367d"]),
)
scalars = st.one_of(
    st.text(max_size=40),
    st.booleans(),
    nasty_numbers,
    st.lists(st.text(max_size=10), max_size=3),
)


@st.composite
def sections(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(DURATION_KEYS[kind]), unique=True)):
        table[key] = draw(nasty_durations)
    for key in draw(st.lists(st.sampled_from(NUMBER_KEYS[kind]), unique=True)):
        table[key] = draw(nasty_numbers)
    if OTHER_KEYS[kind]:
        for key in draw(st.lists(st.sampled_from(OTHER_KEYS[kind]), unique=True, max_size=2)):
            table[key] = draw(scalars)
    if draw(st.booleans()) and draw(st.booleans()):
        table[draw(st.sampled_from(["intervl", "sinkz", "x"]))] = draw(scalars)
    return table


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    target = {"name": "t", "url": "http://127.0.0.1:9/"} | draw(sections("target"))
    if draw(st.booleans()):
        target["active"] = {
            "hours": draw(st.from_regex(r"\A[0-9]{1,2}:[0-9]{2}-[0-9]{1,2}:[0-9]{2}\Z")),
            "timezone": draw(st.sampled_from(["UTC", "Asia/Ashgabat", "Mars/Olympus"])),
        }
    rule = {"sinks": ["c"]} | draw(sections("rule"))
    return {
        "monitor": {"database": "sqlite:///state.db", "listen": ""} | draw(sections("monitor")),
        "delivery": draw(sections("delivery")),
        "targets": [target],
        "rules": [rule],
        "sinks": {"c": {"type": "console", "timeout": draw(nasty_durations)}},
    }


def toml_value(value: Any) -> str:  # noqa: PLR0911 -- one return per TOML type
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):  # a JSON string is a TOML basic string, but for DEL
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        if len({type(v) for v in value}) > 1:
            value = [str(v) for v in value]
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def to_toml(document: dict[str, Any]) -> str:
    out = []
    for section in ("monitor", "delivery"):
        out.append(f"[{section}]")
        out += [f"{k} = {toml_value(v)}" for k, v in document[section].items()]
    for array in ("targets", "rules"):
        for table in document[array]:
            out.append(f"[[{array}]]")
            out += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    for name, table in document["sinks"].items():
        out.append(f"[sinks.{name}]")
        out += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(out) + "\n"


#: a problem line names a key path (``targets[0].interval: ...``)
PROBLEM = re.compile(r"^(\(top level\)|[a-z_]+(\[\d+\])?(\.[A-Za-z0-9_]+(\[\d+\])?)*): \S")


async def builds_and_schedules(config: Path) -> None:
    settings_ = load_settings(config, env={})
    app = await build_app(settings_)
    try:
        scheduler = AsyncIOScheduler()
        Daemon(app).schedule(scheduler)
        assert len(scheduler.get_jobs()) == len(settings_.targets)
    finally:
        await app.aclose()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=documents())
def test_any_configuration_loads_and_runs_or_names_its_bad_keys(
    tmp_path: Path, document: dict[str, Any]
) -> None:
    config = tmp_path / "fuzzed.toml"
    config.write_text(to_toml(document), encoding="utf-8")
    try:
        asyncio.run(builds_and_schedules(config))
    except ConfigError as exc:
        problems = exc.problems
    else:
        return
    assert problems
    assert all(PROBLEM.match(p) for p in problems), problems


NASTY_CONFIGS = {
    "interval = inf": "interval = inf",
    "interval = nan": "interval = nan",
    "interval = 1e18": "interval = 1e18",
    "timeout above the interval": 'interval = "5s"\ntimeout = "10s"',
    "timeout = nan": "timeout = nan",
    "active 00:00-24:30": 'active = { hours = "00:00-24:30" }',
    "max_bytes = 2**63-1": "max_bytes = 9223372036854775807",
    "max_jump_pct = -1": "max_jump_pct = -1",
}


@pytest.mark.parametrize("line", NASTY_CONFIGS.values(), ids=NASTY_CONFIGS.keys())
def test_the_real_commands_refuse_a_bad_configuration_in_one_line_per_key(
    tmp_path: Path, line: str
) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[monitor]\ndatabase = "sqlite:///{tmp_path / "s.db"}"\nlisten = ""\n'
        f'[[targets]]\nname = "t"\nurl = "http://127.0.0.1:9/"\n{line}\n'
        '[[rules]]\nsinks = ["c"]\n[sinks.c]\ntype = "console"\n',
        encoding="utf-8",
    )
    commands = [("validate",)] + ([("run", "--once")] if "inf" in line or "24:30" in line else [])
    for command in commands:
        done = run_cli(config, *command)
        assert done.returncode == 2, (command, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert lines, command
        assert all(ln.startswith("ticker-monitor: config error: targets[0].") for ln in lines)
        assert "Traceback" not in done.stderr
        assert "internal error" not in done.stderr


# --- page fuzzing ----------------------------------------------------------------------------

HOSTILE = [
    "<!channel>",
    "<@U024BE7LH>",
    "<https://evil.example|click>",
    "\r\nBcc: victim@evil.example\r\n",
    "\x00",
    "\u202e",
    "\u2212",
    "1e999999",
    "NaN",
    "= = =",
    "KGS/USD = ",
    "<script>",
    "</div></span>",
    "&amp;&#0;&#x110000;",
    "9" * 400,
]


@st.composite
def pages(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=2000))
    text = page_with(rate(draw(st.integers(0, 50))))
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:at] + draw(st.sampled_from(HOSTILE)) + text[at:]
        else:
            text = text[:at] + text[at + draw(st.integers(0, 200)) :]
    return text.encode("utf-8", "surrogatepass")


@pytest.fixture
def checking(tmp_path: Path) -> Iterator[tuple[ThreadedPageServer, Any]]:
    """A page server and a function checking it once through the daemon's own parts."""
    with ThreadedPageServer(page_with(rate(0))) as server:
        config = write_config(tmp_path, server.url, Sinks())
        loop = asyncio.new_event_loop()
        app = loop.run_until_complete(build_app(load_settings(config, env={})))
        loop.run_until_complete(app.store.open())

        def check_once() -> str:
            result = loop.run_until_complete(app.checker.check(app.plans[0]))
            loop.run_until_complete(app.deliverer.deliver_due())
            return result.outcome

        try:
            yield server, check_once
        finally:
            loop.run_until_complete(app.aclose())
            loop.close()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=pages())
def test_any_page_is_checked_without_a_crash_and_alerts_well_formed(
    checking: tuple[ThreadedPageServer, Any], tmp_path: Path, body: bytes
) -> None:
    server, check_once = checking
    server.set_page(body)
    assert check_once() in ("observed", "not_modified", "parse_failed", "fetch_failed")
    kinds = {k.value for k in EventKind}
    for alert in alerts(tmp_path / "audit.jsonl"):
        assert alert["kind"] in kinds
        for reading in (alert["old"], alert["new"]):
            if reading is not None and reading["rate"] is not None:
                assert Decimal(reading["rate"]).is_finite()


# --- injection -------------------------------------------------------------------------------

EVIL = "<!channel> <@U024BE7LH> Bcc: victim@evil.example <https://evil.example|click here>"


def test_text_from_a_hostile_server_pings_nobody_and_forges_no_header(tmp_path: Path) -> None:
    status_line = f"HTTP/1.1 500 {EVIL}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    title = "$target down: $detail"
    with (
        ThreadedPageServer(page_with(rate(0))) as source,
        ThreadedPageServer("ok") as slack,
        ThreadedSmtpReceiver("plain", credentials=(SMTP_USER, SMTP_PASSWORD)) as smtp,
    ):
        slack.route(SLACK_PATH, Reply(200, body=b"ok"))
        config = write_config(
            tmp_path,
            source.url,
            Sinks(slack_url=slack.url_for(SLACK_PATH), smtp_port=smtp.port, body="$kind: $detail"),
            target="retries = 0\ndown_after = 2",
        )
        text = config.read_text(encoding="utf-8").replace(
            'type = "email"\n', f'type = "email"\ntitle_template = "{title}"\n'
        )
        config.write_text(text, encoding="utf-8")
        with DaemonProcess(config) as daemon:
            assert daemon.wait_log("check_done", timeout=30)
            source.default = Reply(raw=status_line.encode("latin-1"))
            assert wait_for(lambda: len(smtp.handler.mails) >= 1, timeout=20)
            assert wait_for(lambda: len(slack.requests) >= 1, timeout=10)
            assert daemon.terminate() == 0
            assert log_problems(daemon.logs()) == []
        payload = slack.requests[0].body.decode()
        mail = smtp.handler.mails[0]
    for mention in ("<!channel>", "<@U", "<https://"):
        assert mention not in payload
    assert "&lt;!channel&gt;" in payload  # shown, escaped: it pings nobody
    msg = message_from_bytes(mail.content, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg["Bcc"] is None
    assert mail.rcpt_tos == ("ops@example.org",)
    subject = str(msg["Subject"])
    assert "victim@evil.example" in subject  # the text is shown, as text, on one line
    assert "\n" not in subject
    assert "\r" not in subject
    assert sorted(msg.keys()) == sorted(
        [
            "From",
            "To",
            "Subject",
            "Message-ID",
            "Date",
            "Auto-Submitted",
            "X-Ticker-Monitor-Delivery",
            "Content-Type",
            "MIME-Version",
        ]
    )
    record("injection", slack="escaped", mail_headers=len(msg.keys()), recipients=1)
