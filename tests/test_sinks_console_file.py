"""The console and file sinks: line format, exact JSON Lines, fsync, failures."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from monitor.errors import SinkError
from monitor.models import EventKind
from monitor.sinks import Sink
from monitor.sinks.console import ConsoleConfig, ConsoleSink
from monitor.sinks.file import FileConfig, FileSink
from tests.receivers import batch_of, delivery


async def test_console_prints_one_line_per_pair_per_check() -> None:
    out = io.StringIO()
    sink = ConsoleSink("tty", ConsoleConfig(type="console"), stream=out)
    assert isinstance(sink, Sink)
    assert (sink.digest, sink.min_interval) == (True, 0.0)
    d = delivery("tty")
    same_move = delivery("tty", kind=EventKind.RATE_CHANGED, row=3)
    await sink.send([d, delivery("tty", pair="KZT/USD\r\nforged line", row=2), same_move])
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "2025-05-16T09:30:00Z timesca TMT/USD ▼ 0.28575, change 0% → -0.14% "
        f"· page date 2025-05-16 · id {d.short_id}"
    )
    assert len(lines) == 2  # TMT/USD's two events are one line
    assert "KZT/USD forged line" in lines[1]


async def test_console_body_template_and_closed_stream() -> None:
    out = io.StringIO()
    sink = ConsoleSink(
        "tty", ConsoleConfig(type="console", body_template="$pair=$new_rate"), stream=out
    )
    await sink.send([delivery("tty")])
    assert out.getvalue() == "2025-05-16T09:30:00Z TMT/USD=0.28575\n"
    out.close()
    with pytest.raises(SinkError) as info:
        await sink.send([delivery("tty")])
    assert info.value.retryable


async def test_file_appends_exact_json_lines_and_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "deep" / "dir" / "alerts.jsonl"
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    sink = FileSink("audit", FileConfig(type="file", path=path))
    d = delivery("audit")
    tiny = delivery(
        "audit",
        kind=EventKind.PAIR_ADDED,
        pair="UZS/USD",
        old=None,
        new=("0.00000008", None),
        detail="new\u2028pair",
        row=2,
    )
    rate = delivery("audit", kind=EventKind.RATE_CHANGED, row=3)  # the same pair: the same line
    await sink.send([d, tiny, rate])
    assert synced, "the file was not fsync-ed"
    raw = path.read_text(encoding="utf-8")
    assert raw.count("\n") == 2
    assert "\u2028" not in raw  # escaped: no tool splits a record
    first, second = (json.loads(x) for x in raw.splitlines())
    assert first["kind"] == "change_pct_changed"
    assert first["kinds"] == ["change_pct_changed", "rate_changed"]
    assert [(e["kind"], e["dedup_key"]) for e in first["events"]] == [
        ("change_pct_changed", d.dedup_key),
        ("rate_changed", rate.dedup_key),
    ]
    assert first["events"][0] == {
        **d.event.to_json(),
        "dedup_id": d.short_id,
        "dedup_key": d.dedup_key,
    }
    assert (first["target"], first["pair"]) == ("timesca", "TMT/USD")
    assert first["old"] == {"rate": "0.28575", "change_pct": "0"}
    assert first["new"] == {"rate": "0.28575", "change_pct": "-0.14"}
    assert first["observed_at"] == "2025-05-16T09:30:00+00:00"
    assert first["page_date"] == "2025-05-16"
    assert first["source_url"] == "https://timesca.com/"
    assert (first["rule"], first["detail"]) == (None, "")
    assert (first["dedup_id"], first["dedup_key"]) == (d.short_id, d.dedup_key)
    assert first["message"].startswith("timesca TMT/USD ▼")
    assert second["old"] is None
    assert second["new"] == {"rate": "0.00000008", "change_pct": None}
    assert second["detail"] == "new\u2028pair"  # data stays exact; only the encoding escapes it

    await sink.send(batch_of(3, "audit"))
    assert len(path.read_text(encoding="utf-8").splitlines()) == 5  # appended


async def test_file_error_is_retryable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    sink = FileSink("audit", FileConfig(type="file", path=blocker / "alerts.jsonl"))
    with pytest.raises(SinkError) as info:
        await sink.send([delivery("audit")])
    assert info.value.retryable
    assert "audit" in str(info.value)
