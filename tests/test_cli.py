"""The command line as users run it: a real process, real files, a real page server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.daemon_harness import free_port, page, write_config
from tests.pages import SEED_DATE, SEED_QUOTES, ticker_text
from tests.servers import Reply, ThreadedPageServer

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def cli(
    *args: str, stdin: bytes | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        input=stdin.decode("latin-1") if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd or ROOT,
        env=env,
    )


def one_line_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ticker-monitor: ")
    return lines[0]


def test_version_and_help() -> None:
    proc = cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("ticker-monitor ")
    for command in (
        "run",
        "demo",
        "status",
        "check",
        "history",
        "alerts",
        "test-sink",
        "config",
        "validate",
    ):
        assert cli(command, "--help").returncode == 0
    assert cli("alerts", "retry", "--help").returncode == 0
    assert cli("outbox").returncode == 2  # replaced by `alerts`


def test_check_reads_a_text_file_as_a_table(tmp_path: Path) -> None:
    path = tmp_path / "page.txt"
    path.write_text(ticker_text(SEED_QUOTES, date_line=SEED_DATE), encoding="utf-8")
    proc = cli("check", str(path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["PAIR", "RATE", "CHANGE"]
    assert lines[5].split() == ["TMT/USD", "0.28575", "-0.14%"]
    assert lines[2].split() == ["KZT/USD", "0.00196", "-0%"]
    assert lines[-1] == "page date: 2025-05-16"


def test_check_json_from_a_url_matches_the_documented_shape() -> None:
    with ThreadedPageServer(page()) as server:
        proc = cli("check", server.url, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["source"] == server.url
    assert out["page_date"] == "2025-05-16"
    assert out["quotes"][4] == {
        "pair": "TMT/USD",
        "base": "TMT",
        "quote": "USD",
        "rate": "0.28575",
        "change_pct": "-0.14",
        "rate_text": "0.28575",  # the page's own text: it writes the minus as &minus;
        "change_text": "−0.14",
    }
    assert [q["pair"] for q in out["quotes"]] == [q[0] for q in SEED_QUOTES]


def test_check_from_stdin_with_a_site_grammar() -> None:
    text = (FIXTURES / "078.txt").read_bytes()
    proc = cli(
        "check",
        "-",
        "--json",
        "--pattern",
        r"^(?P<base>[A-Z]{3})\s+(?P<rate>\d+(?:[.,]\d+)?)$",
        "--quote-currency",
        "KGS",
        stdin=text,
    )
    assert proc.returncode == 0, proc.stderr
    quotes = json.loads(proc.stdout)["quotes"]
    assert [(q["pair"], q["rate"], q["change_pct"]) for q in quotes] == [
        ("USD/KGS", "69.74", None),
        ("EUR/KGS", "79.24", None),
        ("RUB/KGS", "1.05", None),
    ]


def test_check_with_a_selector() -> None:
    with ThreadedPageServer(page()) as server:
        ok = cli("check", server.url, "--selector", ".ticker", "--json")
        missing = cli("check", server.url, "--selector", ".no-such-thing")
    assert ok.returncode == 0
    assert len(json.loads(ok.stdout)["quotes"]) == 5
    assert "no ticker" in one_line_error(missing, 3)


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", 3),
        (bytes(range(256)) * 64, 3),
        (b"\xff\xfe\xfa invalid utf-8 \xc3\x28 \xa0\xa1", 3),
        (b"<div>" * 100_000 + b"KGS/USD" + b"</div>" * 100_000, 3),
        ((FIXTURES / "026.txt").read_bytes(), 3),
    ],
    ids=["empty", "binary", "invalid-utf8", "deeply-nested-html", "no-ticker"],
)
def test_check_bad_files_end_in_one_line(tmp_path: Path, content: bytes, code: int) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    one_line_error(cli("check", str(path)), code)


def test_check_refuses_a_50_mb_file(tmp_path: Path) -> None:
    path = tmp_path / "big.html"
    with path.open("wb") as handle:
        chunk = b"<p>filler text without any quotes in it at all</p>\n" * 20_000
        while handle.tell() < 50 * 1024 * 1024:
            handle.write(chunk)
    line = one_line_error(cli("check", str(path)), 4)
    assert "larger than" in line


@pytest.mark.parametrize(
    "args",
    [
        ["check", "/no/such/file"],
        ["check", f"http://127.0.0.1:{free_port()}/", "--timeout", "3"],
    ],
    ids=["missing-file", "unreachable-url"],
)
def test_check_unreadable_sources_exit_4(args: Sequence[str]) -> None:
    one_line_error(cli(*args), 4)


def test_check_http_error_exits_4() -> None:
    with ThreadedPageServer(page()) as server:
        server.default = Reply(404, body=b"gone")
        line = one_line_error(cli("check", server.url), 4)
    assert "404" in line


def test_check_usage_errors_exit_2() -> None:
    one_line_error(cli("check", "-", "--pattern", "(?P<rate>["), 2)
    one_line_error(cli("check", "ftp://example.org/"), 2)
    assert cli("check").returncode == 2  # argparse's own usage message


def test_validate_accepts_the_shipped_config() -> None:
    proc = cli("validate", "--config", "config/monitor.toml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("configuration ok: 1 target(s)")


def test_a_file_sink_that_can_never_be_written_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("", encoding="utf-8")
    config = write_config(tmp_path, "http://127.0.0.1:9/", sinks=("audit",))
    text = config.read_text(encoding="utf-8")
    bad = blocker / "alerts.jsonl"
    config.write_text(text.replace(str(tmp_path / "audit.jsonl"), str(bad)), encoding="utf-8")
    expected = (
        f"ticker-monitor: config error: sinks.audit.path: cannot write {bad}: "
        f"{blocker} is not a directory"
    )
    assert one_line_error(cli("validate", "--config", str(config)), 2) == expected
    assert (
        one_line_error(cli("run", "--once", "--config", str(config), cwd=tmp_path), 2) == expected
    )


def test_test_sink_reports_success_and_failure(tmp_path: Path) -> None:
    with ThreadedPageServer("ok") as receiver:
        receiver.route("/fail", Reply(404, body=b"no_service"))
        config = write_config(
            tmp_path,
            receiver.url,
            sinks=("audit",),
            extra=(
                f'[sinks.hook]\ntype = "webhook"\nurl = "{receiver.url_for("/hook")}"\n'
                f'[sinks.broken]\ntype = "webhook"\nurl = "{receiver.url_for("/fail")}"\n'
            ),
        )
        ok = cli("test-sink", "hook", "--config", str(config), cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        assert "accepted" in ok.stdout
        assert any(r.path == "/hook" and r.method == "POST" for r in receiver.requests)
        line = one_line_error(cli("test-sink", "broken", "--config", str(config), cwd=tmp_path), 1)
        assert "permanent" in line
        assert "no_service" in line
        unknown = cli("test-sink", "nope", "--config", str(config), cwd=tmp_path)
        assert "no sink named 'nope'" in one_line_error(unknown, 2)


def test_run_without_targets_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text('[sinks.c]\ntype = "console"\n', encoding="utf-8")
    assert "no [[targets]]" in one_line_error(cli("run", "--config", str(path)), 2)
