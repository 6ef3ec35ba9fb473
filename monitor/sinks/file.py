"""File sink (``type = "file"``): one JSON object per message line appended to a JSON Lines file.

A record is one line of a message: one pair's events of one check, or one outage event. Each
(folded here)::

    {"target": "timesca", "pair": "TMT/USD", "kind": "rate_changed",
     "kinds": ["rate_changed", "change_pct_changed"],
     "old": {"rate": "0.28575", "change_pct": "0"},
     "new": {"rate": "0.28550", "change_pct": "-0.14"},
     "observed_at": "2025-05-16T09:30:00+00:00", "page_date": "2025-05-16",
     "source_url": "https://timesca.com/", "rule": null, "detail": "",
     "event_id": "…", "dedup_id": "1a2b3c4d", "dedup_key": "1a2b3c4d…", "sink": "audit",
     "message": "timesca TMT/USD ▼ 0.28575 → 0.28550 (-0.09%), change 0% → -0.14% · … · id 1a2b3c4d",
     "events": [{"event_id": "…", "kind": "rate_changed", …, "dedup_key": "1a2b3c4d…"},
                {"event_id": "…", "kind": "change_pct_changed", …, "dedup_key": "…"}]}

The top-level ``kind``, ``rule``, ``detail``, ``event_id``, ``dedup_id`` and ``dedup_key`` are the
line's first event's; ``events`` holds every event of the line (the webhook's event objects, each
with its own dedup key). Rates and percentages are exact decimal strings without exponent, or
``null``. The data fields are the events' own values, unsanitized (JSON escapes them);
``message`` is the rendered body line. U+2028, U+2029 and U+0085 are escaped too, so that no
line-splitting tool sees a break inside a record.

A batch is written with one ``write``, then flushed and ``fsync``-ed before ``send`` returns; the
parent directory is created if missing (and synced when the file is new). If the write fails, the
file is truncated back to its previous length, so a retry never leaves half a line behind it. The
file I/O runs in a worker thread (``asyncio.to_thread``). ``OSError`` -> retryable ``SinkError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from monitor import render
from monitor.errors import ConfigError, SinkError
from monitor.models import Delivery, Reading
from monitor.sinks import Accepted, Sink, SinkDeps, SinkSettings, SinkType


class FileConfig(SinkSettings):
    """JSON Lines: one object per message line, each batch fsynced before it counts as sent."""

    type: Literal["file"]
    path: Path
    """the file. Missing directories are created; a new file gets mode `0640` (less the umask)"""


_LINE_SAFE = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def _reading(reading: Reading | None) -> dict[str, str | None] | None:
    if reading is None:
        return None
    return {
        "rate": render.number(reading, "rate"),
        "change_pct": render.number(reading, "change_pct"),
    }


def record(item: Delivery | render.Line, body_template: str | None = None) -> dict[str, Any]:
    """The JSON object written for one line of a message."""
    ln = item if isinstance(item, render.Line) else render.Line((item,))
    ev, first = ln.first, ln.deliveries[0]
    old, new = ln.readings
    return {
        "kind": ev.kind.value,
        "kinds": list(dict.fromkeys(e.kind.value for e in ln.events)),
        "target": ev.target,
        "pair": ev.pair,
        "old": _reading(old),
        "new": _reading(new),
        "observed_at": ev.observed_at.isoformat(),
        "page_date": ev.page_date.isoformat() if ev.page_date else None,
        "source_url": ev.source_url,
        "rule": ev.rule,
        "detail": ev.detail,
        "event_id": ev.event_id,
        "dedup_id": first.short_id,
        "dedup_key": first.dedup_key,
        "sink": first.sink,
        "message": render.line(ln, body_template),
        "events": [
            {**d.event.to_json(), "dedup_id": d.short_id, "dedup_key": d.dedup_key}
            for d in ln.deliveries
        ],
    }


def json_line(obj: dict[str, Any]) -> str:
    """One JSON Lines record: compact, UTF-8 readable, no raw line separator inside."""
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": ")).translate(_LINE_SAFE) + "\n"


def _append(path: Path, data: bytes) -> None:
    new_dir = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    new_file = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)
    if new_file or new_dir:
        _sync_dir(path.parent)
        if new_dir:
            _sync_dir(path.parent.parent)


def _sync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse to fsync a directory; the data itself is synced
    finally:
        os.close(fd)


class FileSink:
    """Appends JSON Lines to one file, durably."""

    digest = True
    bulk = True
    min_interval = 0.0

    def __init__(self, name: str, config: FileConfig) -> None:
        self.name = name
        self.path = Path(config.path)
        self._config = config
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"FileSink(name={self.name!r}, path={str(self.path)!r})"

    async def send(self, batch: Sequence[Delivery], on_accepted: Accepted | None = None) -> None:
        """Append one record per message line, flush and fsync, or raise a retryable ``SinkError``."""
        if not batch:
            return
        template = self._config.body_template
        data = "".join(json_line(record(ln, template)) for ln in render.lines(batch)).encode()
        async with self._lock:
            try:
                await asyncio.to_thread(_append, self.path, data)
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise SinkError(
                    f"file {self.name!r}: cannot append to {self.path}: {reason}", retryable=True
                ) from None

    async def aclose(self) -> None:
        return None


def writable_problem(path: Path) -> str | None:
    """Why ``path`` cannot be appended to (as this process), or None when it can be.

    The file need not exist yet: its nearest existing ancestor must then be a directory this
    process may write into (the sink creates the missing ones).
    """
    if path.exists():
        if not path.is_file():
            return "it exists and is not a regular file"
        return None if os.access(path, os.W_OK) else "the file is not writable"
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"the directory {ancestor} is not writable"
    return None


def _build(name: str, config: FileConfig, deps: SinkDeps) -> Sink:
    # A path that can never be written is a configuration error now, not a day of retries.
    problem = writable_problem(Path(config.path))
    if problem is not None:
        raise ConfigError([f"sinks.{name}.path: cannot write {config.path}: {problem}"])
    return FileSink(name, config)


SINK_TYPE = SinkType("file", FileConfig, _build)
