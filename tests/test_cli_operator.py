"""The operator commands as users run them: `history`, `alerts`, `config`, `status` without a
daemon — real processes on a real SQLite file, written by the daemon's own `run --once` or by the
store's public API."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest

from monitor.models import Quote, Snapshot, TargetState, Validators
from monitor.redact import REDACTED
from monitor.schema import schema_text
from monitor.store.sqlite import SqliteStore
from tests.daemon_harness import page, run_once, write_config
from tests.servers import Reply, ThreadedPageServer
from tests.test_cli import ROOT, cli, one_line_error

T0 = datetime(2025, 5, 16, 8, 0, tzinfo=UTC)
TOKEN = "tok-41b2c3d4e5"
HOOK = "/gone/hook-77aa88bb99"


def seed_history(db: Path, moves: list[tuple[timedelta, str, str]]) -> None:
    """Observations as the daemon writes them: a whole snapshot per change of any pair."""
    rates = {"KGS/USD": "0.01144", "TMT/USD": "0.28575"}

    async def work() -> None:
        store = SqliteStore(db)
        await store.open()
        try:
            for offset, pair, rate in moves:
                rates[pair] = rate
                snapshot = Snapshot(
                    tuple(
                        Quote(p, p[:3], p[4:], Decimal(r), Decimal("0")) for p, r in rates.items()
                    )
                )
                await store.commit_check(
                    "timesca",
                    state=TargetState(snapshot=snapshot),
                    validators=Validators(),
                    observed=snapshot,
                    observed_at=T0 + offset,
                    deliveries=[],
                )
        finally:
            await store.aclose()

    asyncio.run(work())


def config_for(tmp_path: Path, url: str = "http://127.0.0.1:1/", **extra: str) -> Path:
    return write_config(tmp_path, url, **extra)  # type: ignore[arg-type]


MOVES = [
    (timedelta(0), "TMT/USD", "0.28575"),
    (timedelta(minutes=5), "TMT/USD", "0.28600"),
    (timedelta(minutes=9), "KGS/USD", "0.01150"),
    (timedelta(minutes=30), "TMT/USD", "0.28550"),
]


def test_history_prints_the_changes_in_time_order_in_every_format(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    seed_history(tmp_path / "state.db", MOVES)
    since = ("--since", "2025-05-16")
    expected = [
        ("2025-05-16T08:00:00+00:00", "KGS/USD", "0.01144"),
        ("2025-05-16T08:00:00+00:00", "TMT/USD", "0.28575"),
        ("2025-05-16T08:05:00+00:00", "TMT/USD", "0.28600"),
        ("2025-05-16T08:09:00+00:00", "KGS/USD", "0.01150"),
        ("2025-05-16T08:30:00+00:00", "TMT/USD", "0.28550"),
    ]
    as_json = cli("history", "--config", str(config), *since, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert sorted((r["time"], r["pair"], r["rate"]) for r in rows) == expected
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)

    as_csv = cli("history", "--config", str(config), *since, "--format", "csv")
    table = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["time"], r["pair"], r["rate"]) for r in table] == [
        (r["time"], r["pair"], r["rate"]) for r in rows
    ]
    assert table[0].keys() == {"time", "target", "pair", "rate", "change_pct"}

    plain = cli("history", "--config", str(config), *since, "--pair", "TMT/USD")
    lines = plain.stdout.splitlines()
    assert lines[0].split() == ["TIME", "(UTC)", "TARGET", "PAIR", "RATE", "CHANGE"]
    assert [line.split()[4] for line in lines[1:]] == ["0.28575", "0.28600", "0.28550"]
    assert lines[2].startswith("2025-05-16 08:05:00  timesca  TMT/USD")

    chart = cli("history", "--config", str(config), *since, "--pair", "TMT/USD", "--chart")
    assert chart.returncode == 0, chart.stderr
    assert chart.stdout.startswith("timesca TMT/USD: 0.28575 → 0.28550 (3 values)")
    assert "0.28600 ┤" in chart.stdout
    assert "█" in chart.stdout

    png = tmp_path / "chart.png"
    drawn = cli("history", "--config", str(config), *since, "--png", str(png))
    assert drawn.returncode == 0, drawn.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5000  # a real image, not a header

    nothing = cli("history", "--config", str(config), "--since", "1h")  # all of it is older
    assert nothing.returncode == 0
    assert nothing.stdout == ""
    assert "no history" in nothing.stderr
    assert "--since" in one_line_error(cli("history", "--config", str(config), "--since", "x"), 2)


def test_history_survives_a_reader_that_stops_early(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    seed_history(
        tmp_path / "state.db",
        [(timedelta(seconds=i), "TMT/USD", f"0.{28000 + i}") for i in range(1200)],
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    args = ["history", "--config", str(config), "--since", "2025-05-01", "--format", "json"]
    writer = subprocess.Popen(
        [sys.executable, "-m", "monitor", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    assert writer.stdout is not None
    assert writer.stderr is not None
    head = subprocess.run(
        [shutil.which("head") or "/usr/bin/head", "-n", "2"],
        stdin=writer.stdout,
        capture_output=True,
        timeout=60,
        check=False,
    )
    writer.stdout.close()  # the reader is gone: the writer's next write hits a closed pipe
    errors = writer.stderr.read().decode()
    assert writer.wait(timeout=60) == 0
    assert len(head.stdout.splitlines()) == 2
    assert errors == ""  # no BrokenPipeError, no traceback


def test_alerts_list_every_status_and_retry_dead_letters(tmp_path: Path) -> None:
    with ThreadedPageServer(page()) as server:
        server.route(HOOK, Reply(404, body=b"no_service"))
        config = write_config(
            tmp_path,
            f"{server.url}?token={TOKEN}",
            sinks=("audit", "gone"),
            extra=f'[sinks.gone]\ntype = "webhook"\nurl = "{server.url_for(HOOK)}"\n',
        )
        assert run_once(config).returncode == 0
        server.set_page(page({"TMT/USD": ("0.28575", "0")}))
        assert run_once(config).returncode == 5  # run --once: an alert is dead-lettered

        listing = cli("alerts", "--config", str(config), "--json", cwd=tmp_path)
        assert listing.returncode == 0, listing.stderr
        rows = [json.loads(line) for line in listing.stdout.splitlines()]
        assert {(r["sink"], r["status"], r["kind"]) for r in rows} == {
            ("audit", "sent", "change_pct_changed"),
            ("gone", "dead", "change_pct_changed"),
        }
        dead = next(r for r in rows if r["status"] == "dead")
        sent = next(r for r in rows if r["status"] == "sent")
        assert "404" in dead["last_error"]
        assert dead["attempts"] == 1
        assert len(dead["dedup_id"]) == 8

        table = cli("alerts", "--config", str(config), "--status", "dead", cwd=tmp_path)
        (header, line) = table.stdout.splitlines()
        assert header.split()[:3] == ["DETECTED", "(UTC)", "ID"]
        assert f"#{dead['dedup_id']}" in line
        assert "timesca: TMT/USD ▲ 0.28575, change -0.14% → 0%" in line
        assert cli("alerts", "--config", str(config), "--since", "1d", cwd=tmp_path).stdout
        assert (
            cli("alerts", "--config", str(config), "--status", "silenced", cwd=tmp_path).stdout
            == ""
        )

        not_dead = cli("alerts", "retry", sent["dedup_id"], "--config", str(config), cwd=tmp_path)
        assert not_dead.returncode == 1
        assert "not re-queued: it is sent" in not_dead.stdout
        unknown = cli("alerts", "retry", "#00000000", "--config", str(config), cwd=tmp_path)
        assert "no such alert" in one_line_error(unknown, 2)
        retried = cli(
            "alerts", "retry", f"#{dead['dedup_id']}", "--config", str(config), cwd=tmp_path
        )
        assert retried.returncode == 0, retried.stderr
        assert f"#{dead['dedup_id']} gone: re-queued" in retried.stdout
        pending = cli(
            "alerts", "--config", str(config), "--status", "pending", "--json", cwd=tmp_path
        )
        assert [json.loads(x)["dedup_id"] for x in pending.stdout.splitlines()] == [
            dead["dedup_id"]
        ]
        assert run_once(config).returncode == 5  # dead again: the receiver still says 404
        again = cli("alerts", "retry", "--all-dead", "--config", str(config), cwd=tmp_path)
        assert "re-queued 1 dead letter(s)" in again.stdout
        outputs = listing.stdout + table.stdout + retried.stdout
    assert TOKEN not in outputs
    assert "hook-77aa88bb99" not in outputs


def test_config_show_masks_every_secret(tmp_path: Path) -> None:
    secrets = ["slack-s3cr3t-1", "smtp-s3cr3t-2", "pg-s3cr3t-3", "tok-s3cr3t-4", "hdr-s3cr3t-5"]
    path = tmp_path / "monitor.toml"
    path.write_text(
        f"""
[monitor]
database = "postgresql://monitor:{secrets[2]}@db.internal/monitor"
[[targets]]
name = "t"
url = "https://reader:{secrets[3]}@example.org/rates?key={secrets[3]}&lang=en"
interval = "10m"
headers = {{ Authorization = "Bearer {secrets[4]}" }}
[sinks.team]
type = "slack"
webhook_url = "https://hooks.slack.com/services/T1/B2/{secrets[0]}"
[sinks.mail]
type = "email"
host = "smtp.example.org"
tls = "starttls"
username = "alerts"
password = "{secrets[1]}"
from = "a@example.org"
to = ["ops@example.org"]
[[rules]]
sinks = ["team", "mail"]
""",
        encoding="utf-8",
    )
    as_toml = cli("config", "show", "--config", str(path))
    assert as_toml.returncode == 0, as_toml.stderr
    as_json = cli("config", "show", "--config", str(path), "--format", "json")
    for out in (as_toml.stdout, as_json.stdout):
        for secret in secrets:
            assert secret not in out
    shown = tomllib.loads(as_toml.stdout)
    assert shown["targets"][0]["interval"] == 600.0
    assert shown["targets"][0]["url"].startswith("https://reader:[REDACTED]@example.org/rates?")
    assert shown["targets"][0]["headers"] == {"Authorization": REDACTED}
    assert shown["monitor"]["database"] == "postgresql://monitor:[REDACTED]@db.internal/monitor"
    assert shown["sinks"]["mail"]["from"] == "a@example.org"
    assert shown["sinks"]["team"]["webhook_url"] == REDACTED
    assert json.loads(as_json.stdout)["sinks"]["mail"]["password"] == REDACTED
    assert shown["targets"][0]["url"].endswith(f"?key={REDACTED}&lang={REDACTED}")


def test_config_show_writes_a_sqlite_path_as_given(tmp_path: Path) -> None:
    cases = {
        "sqlite:////var/lib/ticker-monitor/state.db": "sqlite:////var/lib/ticker-monitor/state.db",
        "sqlite:///state.db": f"sqlite:///{tmp_path / 'state.db'}",  # beside the file, as run
    }
    for database, effective in cases.items():
        path = tmp_path / "monitor.toml"
        path.write_text(
            f'[monitor]\ndatabase = "{database}"\n'
            '[[targets]]\nname = "t"\nurl = "http://127.0.0.1:9/"\n',
            encoding="utf-8",
        )
        shown = cli("config", "show", "--config", str(path))
        assert shown.returncode == 0, shown.stderr
        assert tomllib.loads(shown.stdout)["monitor"]["database"] == effective


def test_config_check_and_its_alias_validate(tmp_path: Path) -> None:
    for command in (("config", "check"), ("validate",)):
        ok = cli(*command, "--config", "config/monitor.toml")
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.startswith("configuration ok: 1 target(s)")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[targets]]\nname = "t"\nurl = "http://x/"\nintervl = 1\n', encoding="utf-8")
    line = one_line_error(cli("config", "check", "--config", str(bad)), 2)
    assert line == "ticker-monitor: config error: targets[0].intervl: unknown key"


def test_config_schema_is_the_committed_one_and_checks_the_shipped_file() -> None:
    proc = cli("config", "schema")
    assert proc.returncode == 0, proc.stderr
    committed = (ROOT / "config" / "monitor.schema.json").read_text(encoding="utf-8")
    assert proc.stdout == schema_text()
    assert committed == proc.stdout, "config/monitor.schema.json is stale: run `make schema`"
    schema = json.loads(committed)
    shipped = (ROOT / "config" / "monitor.toml").read_text(encoding="utf-8")
    assert shipped.splitlines()[0] == "#:schema ./monitor.schema.json"
    jsonschema.validate(tomllib.loads(shipped), schema)
    typo = tomllib.loads(shipped)
    typo["targets"][0]["intervl"] = "5m"
    with pytest.raises(jsonschema.ValidationError, match="intervl"):
        jsonschema.validate(typo, schema)
    secret_file = tomllib.loads('[sinks.t]\ntype = "slack"\nwebhook_url_file = "/run/secrets/x"')
    jsonschema.validate(secret_file, schema)  # x_file stands for a secret x
    jsonschema.validate({"targets": [{"name": "t", "url": "http://x/", "interval": 30}]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {"targets": [{"name": "t", "url": "http://x/", "interval": "soon"}]}, schema
        )


def test_status_without_a_daemon_reads_the_store(tmp_path: Path) -> None:
    with ThreadedPageServer(page()) as server:
        config = write_config(tmp_path, f"{server.url}?token={TOKEN}")
        assert run_once(config).returncode == 0
        server.set_page(page({"TMT/USD": ("0.28600", "-0.14")}))
        assert run_once(config).returncode == 0
    as_json = cli("status", "--json", "--config", str(config), cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    picture = json.loads(as_json.stdout)
    assert picture["live"] is False
    (target,) = picture["targets"]
    assert target["health"] == "ok"
    assert target["next_run"] is None
    tmt = next(p for p in target["pairs"] if p["pair"] == "TMT/USD")
    assert (tmt["rate"], tmt["change_pct"]) == ("0.28600", "-0.14")
    assert [h["rate"] for h in tmt["history"]] == ["0.28575", "0.28600"]
    assert picture["alerts"][0]["kind"] == "rate_changed"
    text = cli("status", "--config", str(config), cwd=tmp_path).stdout
    assert "from the store (daemon not reachable)" in text
    assert "TMT/USD  0.28600" in text
    assert "next run unknown" in text
    assert TOKEN not in as_json.stdout + text
