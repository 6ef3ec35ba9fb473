"""``ticker-monitor check SOURCE``: read one page's ticker and print it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import structlog

from monitor import __version__
from monitor.cli.common import (
    EXIT_FETCH,
    EXIT_NO_TICKER,
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    fail,
)
from monitor.errors import FetchError, ParseError
from monitor.fetch import FetchPolicy, fetch_once, safe_url
from monitor.models import Snapshot, dec_str
from monitor.parse import Grammar, parse

DEFAULT_MAX_BYTES = 20_000_000

log = structlog.get_logger("monitor.cli")


def register(sub: Subparsers) -> None:
    check = sub.add_parser(
        "check",
        help="read the ticker of one page and print its quotes",
        description="Read the ticker of one page (a URL, a file, or - for stdin).",
    )
    check.add_argument("source", metavar="SOURCE", help="http(s):// URL, file path, or - for stdin")
    check.add_argument("--selector", metavar="CSS", help="only read the elements this selects")
    check.add_argument("--pattern", metavar="REGEX", help="a per-site grammar (named groups)")
    check.add_argument("--quote-currency", metavar="CUR", help="quote currency the page implies")
    check.add_argument(
        "--decimal-separator", choices=[".", ","], default=".", help="decimal separator"
    )
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.add_argument("--timeout", type=float, default=30.0, help="fetch deadline in seconds")
    check.add_argument(
        "--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="refuse larger pages"
    )
    check.set_defaults(func=run)


def _read_source(source: str, timeout: float, max_bytes: int) -> tuple[bytes, str]:
    if source.startswith(("http://", "https://")):
        policy = FetchPolicy(timeout=timeout, max_bytes=max_bytes)
        user_agent = f"ticker-monitor/{__version__}"
        try:
            result = asyncio.run(fetch_once(source, policy=policy, user_agent=user_agent))
        except FetchError as exc:
            fail(EXIT_FETCH, f"cannot fetch {safe_url(source)}: {exc}")
        return result.body, source
    if "://" in source:
        fail(EXIT_USAGE, f"unsupported source {source!r}: use an http(s):// URL, a path or -")
    try:
        if source == "-":
            data = sys.stdin.buffer.read(max_bytes + 1)
        else:
            with Path(source).open("rb") as handle:
                data = handle.read(max_bytes + 1)
    except OSError as exc:
        fail(EXIT_FETCH, f"cannot read {source}: {exc.strerror or exc}")
    if len(data) > max_bytes:
        fail(EXIT_FETCH, f"{source} is larger than {max_bytes} bytes (see --max-bytes)")
    return data, source


def _table(snapshot: Snapshot) -> str:
    rows = [("PAIR", "RATE", "CHANGE")]
    for q in snapshot.quotes:
        change = "" if q.change_pct is None else f"{dec_str(q.change_pct)}%"
        rows.append((q.pair, dec_str(q.rate), change))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [
        f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}".rstrip() for r in rows
    ]
    if snapshot.page_date:
        lines.append(f"page date: {snapshot.page_date.isoformat()}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        grammar = Grammar.from_config(
            pattern=args.pattern,
            quote_currency=args.quote_currency,
            decimal_separator=args.decimal_separator,
        )
    except ValueError as exc:
        fail(EXIT_USAGE, str(exc))
    if args.max_bytes < 1 or args.timeout <= 0:
        fail(EXIT_USAGE, "--max-bytes and --timeout must be positive")
    body, source = _read_source(args.source, args.timeout, args.max_bytes)
    try:
        snapshot = parse(body, selector=args.selector, grammar=grammar)
    except ParseError as exc:
        fail(EXIT_NO_TICKER, f"no ticker found in {safe_url(source)}: {exc}")
    if snapshot.conflicts:
        log.warning("ticker_repeats_disagree", pairs=list(snapshot.conflicts), kept="first block")
    if args.json:
        out: dict[str, Any] = {
            "source": source,
            "page_date": snapshot.page_date.isoformat() if snapshot.page_date else None,
            "quotes": [q.to_json() for q in snapshot.quotes],
        }
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(_table(snapshot))
    return EXIT_OK
