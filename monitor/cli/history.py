"""``ticker-monitor history``: each pair's changes over time, as a table, CSV, JSON, a terminal
chart or a PNG.

Rows are the moments a pair's rate or percentage changed (the first row of each pair in the window
is its value then), in time order, numbers exactly as the page wrote them.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    add_config,
    columns,
    fail,
    parse_since,
    with_store,
)

if TYPE_CHECKING:
    from monitor.history import Change
    from monitor.store import Store


def register(sub: Subparsers) -> None:
    history = sub.add_parser(
        "history",
        help="print each pair's changes over time (table, CSV, JSON, chart, PNG)",
        description="Print the changes of each pair in time order, from the stored history "
        "(kept `history_retention`, 30 days by default).",
    )
    add_config(history)
    history.add_argument("--target", metavar="NAME", help="only this target")
    history.add_argument("--pair", metavar="PAIR", help="only this pair, e.g. TMT/USD")
    history.add_argument(
        "--since", metavar="AGE", default="7d", help="from then on: 7d (default), 6h, 2025-05-16"
    )
    history.add_argument(
        "--format",
        choices=["table", "csv", "json"],
        default="table",
        help="table (default), csv, or json (one object per line)",
    )
    history.add_argument(
        "--chart", action="store_true", help="draw a terminal chart of each pair instead"
    )
    history.add_argument(
        "--png", metavar="FILE", type=Path, help="also write a chart image (needs [charts])"
    )
    history.set_defaults(func=run)


def _series(rows: Sequence[Change]) -> dict[str, list[Change]]:
    out: dict[str, list[Change]] = {}
    for row in rows:
        out.setdefault(f"{row.target} {row.pair}", []).append(row)
    return out


def _print(rows: Sequence[Change], fmt: str) -> None:
    from monitor.models import dec_str  # noqa: PLC0415 -- start-up time

    if fmt == "json":
        for row in rows:
            print(json.dumps(row.to_json(), ensure_ascii=False))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["time", "target", "pair", "rate", "change_pct"])
        for row in rows:
            data = row.to_json()
            writer.writerow([data["time"], row.target, row.pair, data["rate"], data["change_pct"]])
    else:
        table = [("TIME (UTC)", "TARGET", "PAIR", "RATE", "CHANGE")]
        for row in rows:
            pct = "" if row.change_pct is None else f"{dec_str(row.change_pct)}%"
            at = row.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
            table.append((at, row.target, row.pair, dec_str(row.rate), pct))
        for line in columns(table, right={3, 4}):
            print(line)


def run(args: argparse.Namespace) -> int:
    from monitor.history import changes  # noqa: PLC0415 -- start-up time

    since = parse_since(args.since)
    if args.png is not None:
        try:
            import matplotlib  # noqa: F401, PLC0415 -- only to say early that it is missing
        except ModuleNotFoundError:
            fail(EXIT_USAGE, "--png needs matplotlib: pip install 'ticker-monitor[charts]'")

    async def work(store: Store) -> list[Change]:
        return changes(await store.history(target=args.target, since=since), pair=args.pair)

    rows = with_store(args, work)
    now = datetime.now(UTC)
    if not rows:
        what = " ".join(x for x in (args.target, args.pair) if x) or "any target"
        print(
            f"ticker-monitor: no history for {what} since {since:%Y-%m-%d %H:%M}Z", file=sys.stderr
        )
        return EXIT_OK
    if args.png is not None:
        from monitor.charts import png_chart  # noqa: PLC0415 -- start-up time

        title = f"ticker-monitor history since {since:%Y-%m-%d %H:%M}Z"
        try:
            png_chart(_series(rows), args.png, end=now, title=title)
        except OSError as exc:
            fail(EXIT_USAGE, f"cannot write {args.png}: {exc.strerror or exc}")
        print(f"wrote {args.png} ({len(rows)} values)", file=sys.stderr)
    if args.chart:
        from monitor.charts import terminal_chart  # noqa: PLC0415 -- start-up time

        print(terminal_chart(_series(rows), end=now))
    elif args.png is None:
        _print(rows, args.format)
    return EXIT_OK
