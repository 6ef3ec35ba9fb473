"""The alerting commands as users run them: ``silence``, ``rules test``, ``test-sink``, ``validate``
and ``run --once``'s exit codes. Real processes, real files, real servers on loopback."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from tests.daemon_harness import alerts, page, run_once, write_config
from tests.pages import SEED_DATE, SEED_QUOTES, ticker_text
from tests.receivers import HttpReceiver
from tests.servers import Reply, ThreadedPageServer
from tests.test_cli import cli, one_line_error

BASE = {"TMT/USD": ("0.28575", "0")}


def config_file(tmp_path: Path, extra: str = "", url: str = "https://timesca.com/") -> Path:
    return write_config(tmp_path, url, sinks=("audit",), extra=extra)


# --- silence --------------------------------------------------------------------------------


def test_silence_add_list_expire(tmp_path: Path) -> None:
    config = str(config_file(tmp_path))
    added = cli("silence", "add", "--target", "timesca", "--pair", "TMT/USD", "--kind",
                "threshold", "--for", "2h", "--comment", "a\nforged line", "--author", "ops",
                "--config", config, cwd=tmp_path)  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert re.fullmatch(r"[0-9a-f]{8}\n", added.stdout)
    sid = added.stdout.strip()
    listing = cli("silence", "list", "--config", config, cwd=tmp_path)
    assert listing.returncode == 0
    head, row = listing.stdout.splitlines()
    assert head.split() == [
        "ID",
        "STATE",
        "TARGET",
        "PAIR",
        "KIND",
        "ENDS",
        "(UTC)",
        "BY",
        "COMMENT",
    ]
    assert row.split()[:5] == [sid, "active", "timesca", "TMT/USD", "threshold"]
    assert row.endswith("ops  a forged line")  # one line: the comment's line break is gone
    (data,) = [json.loads(x) for x in cli("silence", "list", "--json", "--config", config,
                                          cwd=tmp_path).stdout.splitlines()]  # fmt: skip
    assert (data["id"], data["pair"], data["kind"], data["created_by"]) == (
        sid,
        "TMT/USD",
        "threshold",
        "ops",
    )

    expired = cli("silence", "expire", sid, "--config", config, cwd=tmp_path)
    assert (
        expired.stdout
        == f"silence {sid} expired: timesca TMT/USD threshold alerts are sent again\n"
    )
    again = cli("silence", "expire", sid, "--config", config, cwd=tmp_path)
    assert again.returncode == 0
    assert "had already ended" in again.stdout
    assert cli("silence", "list", "--config", config, cwd=tmp_path).stdout == "no active silences\n"
    assert sid in cli("silence", "list", "--all", "--config", config, cwd=tmp_path).stdout


def test_silence_mistakes_are_one_line_exit_2(tmp_path: Path) -> None:
    config = str(config_file(tmp_path))
    base = ("silence", "add", "--config", config)
    cases = [
        (
            (*base, "--target", "tmiesca", "--for", "1h"),
            "no target named 'tmiesca' (configured: timesca)",
        ),
        ((*base, "--target", "timesca", "--for", "soon"), "--for: expected a duration"),
        (
            (*base, "--target", "timesca", "--for", "0"),
            "--for: a silence must last longer than 0 s",
        ),
        ((*base, "--target", "timesca", "--for", "1h", "--pair", "tmt"), "--pair: expected a pair"),
        (("silence", "expire", "nope", "--config", config), "no silence with id 'nope'"),
    ]
    for args, message in cases:
        assert message in one_line_error(cli(*args, cwd=tmp_path), 2)


# --- rules test -----------------------------------------------------------------------------


def pages(tmp_path: Path) -> tuple[Path, Path]:
    old, new = tmp_path / "old.txt", tmp_path / "new.txt"
    quotes = [(p, r, "0" if p == "TMT/USD" else c) for p, r, c in SEED_QUOTES]
    old.write_text(ticker_text(quotes, date_line=SEED_DATE), encoding="utf-8")
    moved = [(p, "0.28550", "-0.14") if p == "TMT/USD" else (p, r, c) for p, r, c in quotes]
    new.write_text(ticker_text(moved, date_line=SEED_DATE), encoding="utf-8")
    return old, new


RULES = """
[[rules]]
name = "tmt-low"
pairs = ["TMT/USD"]
below = 0.2856
sinks = ["mail"]

[[rules]]
name = "tmt-high"
pairs = ["TMT/USD"]
below = 0.2857
for = "5m"
sinks = ["mail"]

[[rules]]
name = "night"
events = ["rate_changed"]
mute = { hours = "22:00-07:00" }
sinks = ["mail"]

[sinks.mail]
type = "console"
title_template = "MAIL $subjects"
"""


def test_rules_test_shows_events_routes_pending_and_messages(tmp_path: Path) -> None:
    config = str(config_file(tmp_path, RULES))
    old, new = pages(tmp_path)
    proc = cli("rules", "test", str(old), str(new), "--config", config,
               "--at", "2025-05-16T23:00:00Z", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "events (3)" in out
    assert re.search(r"rate_changed +TMT/USD +0\.28575 → 0\.28550 \(-0\.09%\)", out)
    assert re.search(r"threshold +TMT/USD +rule tmt-low: rate below 0\.2856", out)
    # routes: the catch-all, the threshold's own rule, the muted rule recorded as silenced
    assert re.search(r"rate_changed +TMT/USD +all → audit; night → mail \(mute:night\)", out)
    assert re.search(r"threshold +TMT/USD +all → audit; tmt-low → mail", out)
    assert re.search(r"tmt-high +TMT/USD +below +fires if it holds for 5 min", out)
    assert "message to audit (file): timesca: TMT/USD ▼ 0.28550 (-0.09%)" in out
    assert "message to mail (console): MAIL timesca: TMT/USD ▼" in out
    assert not list(tmp_path.glob("*.jsonl"))  # nothing was sent
    assert not (tmp_path / "state.db").exists()  # nor stored


def test_rules_test_reads_check_json_and_prints_json(tmp_path: Path) -> None:
    config = str(config_file(tmp_path, RULES))
    old, new = pages(tmp_path)
    old_json = tmp_path / "old.json"
    old_json.write_text(cli("check", str(old), "--json").stdout, encoding="utf-8")
    proc = cli("rules", "test", str(old_json), str(new), "--json", "--config", config,
               "--at", "2025-05-16T12:00:00Z", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [(e["kind"], e["pair"]) for e in doc["events"]] == [
        ("rate_changed", "TMT/USD"),
        ("change_pct_changed", "TMT/USD"),
        ("threshold", "TMT/USD"),
    ]
    assert {(d["kind"], d["rule"], d["sink"], d["silenced_by"]) for d in doc["deliveries"]} == {
        ("rate_changed", "all", "audit", None),
        ("rate_changed", "night", "mail", None),  # noon: not muted
        ("change_pct_changed", "all", "audit", None),
        ("threshold", "all", "audit", None),
        ("threshold", "tmt-low", "mail", None),
    }
    assert doc["pending"] == [
        {"rule": "tmt-high", "pair": "TMT/USD", "condition": "below", "for_seconds": 300.0}
    ]


def test_rules_test_mistakes(tmp_path: Path) -> None:
    config = str(config_file(tmp_path))
    old, _ = pages(tmp_path)
    blank = tmp_path / "blank.txt"
    blank.write_text("no ticker here\n", encoding="utf-8")
    assert "no ticker found in" in one_line_error(
        cli("rules", "test", str(old), str(blank), "--config", config, cwd=tmp_path), 3
    )
    assert "only one of OLD and NEW" in one_line_error(
        cli("rules", "test", "-", "-", "--config", config, cwd=tmp_path), 2
    )
    assert "no target named 'x'" in one_line_error(
        cli("rules", "test", str(old), str(old), "--target", "x", "--config", config, cwd=tmp_path),
        2,
    )
    same = cli("rules", "test", str(old), str(old), "--config", config, cwd=tmp_path)
    assert "no events" in same.stdout


# --- test-sink, validate --------------------------------------------------------------------


async def test_test_sink_sends_a_marked_test_alert_for_a_configured_target(tmp_path: Path) -> None:
    async with HttpReceiver() as receiver:
        config = write_config(
            tmp_path,
            "https://timesca.com/",
            sinks=("audit",),
            extra=f'[sinks.hook]\ntype = "webhook"\nurl = "{receiver.url("/hook")}"\n',
        )
        # the receiver answers in this loop: run the command in a thread
        proc = await asyncio.to_thread(
            cli, "test-sink", "hook", "--config", str(config), cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "sink 'hook': test alert for timesca accepted\n"
        (request,) = receiver.requests
        body = request.json()
    assert body["title"].startswith("[test] timesca: TEST/USD ▲ 1.0025")
    assert body["text"].startswith("[test] timesca TEST/USD ▲ 1.0000 → 1.0025 (+0.25%)")
    assert len(body["text"].splitlines()) == 1  # the two events of the move: one line
    assert [(e["kind"], e["target"], e["test"]) for e in body["events"]] == [
        ("rate_changed", "timesca", True),
        ("change_pct_changed", "timesca", True),
    ]
    assert "test-sink" in body["events"][0]["detail"]
    assert not (tmp_path / "state.db").exists()


def test_validate_refuses_a_target_no_rule_routes_but_run_starts(tmp_path: Path) -> None:
    with ThreadedPageServer(page(BASE)) as server:
        config = write_config(
            tmp_path,
            server.url,
            sinks=("audit",),
            extra=f'[[targets]]\nname = "lonely"\nurl = "{server.url}"\n',
        )
        text = config.read_text(encoding="utf-8").replace(
            'name = "all"\n', 'name = "all"\ntargets = ["timesca"]\n'
        )
        config.write_text(text, encoding="utf-8")
        line = one_line_error(cli("validate", "--config", str(config), cwd=tmp_path), 2)
        assert line == (
            "ticker-monitor: config error: targets[1]: no rule routes any event of target "
            "'lonely'; add a [[rules]] entry for it"
        )
        proc = run_once(config)
    assert proc.returncode == 0, proc.stderr
    assert "target_unrouted" in proc.stderr  # the log says it, the run goes on


# --- run --once exit codes ------------------------------------------------------------------


def test_run_once_exit_codes_tell_cron_what_went_wrong(tmp_path: Path) -> None:
    with ThreadedPageServer(page(BASE)) as server:
        server.route("/hook", Reply(503, body=b"busy"))
        config = write_config(
            tmp_path,
            server.url,
            sinks=("audit", "hook"),
            extra=f'[sinks.hook]\ntype = "webhook"\nurl = "{server.url_for("/hook")}"\n',
        )
        assert run_once(config).returncode == 0  # a baseline: nothing to send
        server.set_page(page({"TMT/USD": ("0.28575", "-0.14")}))
        pending = run_once(config)
        assert pending.returncode == 5, pending.stderr
        assert (
            "ticker-monitor: undelivered alerts: 1 pending (retried by the next run), 0 dead"
            in pending.stderr
        )
        assert len(alerts(tmp_path / "audit.jsonl")) == 1  # the healthy sink got it
        server.route("/hook", Reply(410, body=b"gone"))
        server.default = Reply(500)
        both = run_once(config)  # the page fails too; the undelivered alert comes first
        assert both.returncode == 5
        assert "could not fetch: timesca" in both.stderr
        assert "0 pending (retried by the next run), 1 dead" in both.stderr


def test_help_of_the_new_commands() -> None:
    for args in (("silence", "add", "--help"), ("rules", "test", "--help")):
        proc = cli(*args)
        assert proc.returncode == 0, proc.stderr
        assert "--config" in proc.stdout


async def test_no_secret_of_a_target_url_reaches_rules_test_or_test_sink(tmp_path: Path) -> None:
    secret_url = "https://reader:s3cr3t-pw@ticker.example/rates?token=t0ken-abc"
    async with HttpReceiver() as receiver:
        config = write_config(
            tmp_path,
            secret_url,
            sinks=("audit",),
            extra=f'[sinks.hook]\ntype = "webhook"\nurl = "{receiver.url("/hook")}"\n',
        )
        proc = await asyncio.to_thread(
            cli, "test-sink", "hook", "--config", str(config), cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
        sent = receiver.requests[0].body.decode()
    old, new = pages(tmp_path)
    dry = cli("rules", "test", str(old), str(new), "--config", str(config), cwd=tmp_path)
    dry_json = cli(
        "rules", "test", str(old), str(new), "--json", "--config", str(config), cwd=tmp_path
    )
    for text in (sent, proc.stdout, proc.stderr, dry.stdout, dry.stderr, dry_json.stdout):
        assert "s3cr3t-pw" not in text
        assert "t0ken-abc" not in text
    assert "https://ticker.example/rates" in sent  # the page, as a check reports it
    assert json.loads(dry_json.stdout)["events"][0]["source_url"] == "https://ticker.example/rates"
