"""A command's ``SOURCE`` argument: an http(s) URL, a file, or ``-`` for stdin (``check``,
``rules test``)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from monitor import __version__
from monitor.cli.common import EXIT_FETCH, EXIT_USAGE, fail
from monitor.errors import FetchError

__all__ = ["read_source"]


def read_source(source: str, timeout: float, max_bytes: int) -> tuple[bytes, str, str]:
    """The body, its Content-Type (``""`` for files and stdin) and how to name the source."""
    if source.startswith(("http://", "https://")):
        # imported here: httpx and aiohttp are a fifth of a second that a file does not need
        from monitor.fetch import FetchPolicy, fetch_once, safe_url  # noqa: PLC0415

        policy = FetchPolicy(timeout=timeout, max_bytes=max_bytes)
        user_agent = f"ticker-monitor/{__version__}"
        try:
            result = asyncio.run(fetch_once(source, policy=policy, user_agent=user_agent))
        except FetchError as exc:
            fail(EXIT_FETCH, f"cannot fetch {safe_url(source)}: {exc}")
        return result.body, result.content_type, safe_url(source)
    if "://" in source:
        fail(EXIT_USAGE, f"unsupported source {source!r}: use an http(s):// URL, a path or -")
    label = "stdin" if source == "-" else source
    try:
        if source == "-":
            data = sys.stdin.buffer.read(max_bytes + 1)
        else:
            with Path(source).open("rb") as handle:
                data = handle.read(max_bytes + 1)
    except OSError as exc:
        fail(EXIT_FETCH, f"cannot read {label}: {exc.strerror or exc}")
    if len(data) > max_bytes:
        fail(EXIT_FETCH, f"{label} is larger than {max_bytes} bytes (see --max-bytes)")
    return data, "", label
