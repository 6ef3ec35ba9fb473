"""``ticker-monitor outbox``: list alerts and their delivery state; re-queue dead letters."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from monitor.cli.common import (
    EXIT_OK,
    EXIT_SINK,
    EXIT_USAGE,
    Subparsers,
    add_config,
    fail,
    settings_of,
)


def register(sub: Subparsers) -> None:
    outbox = sub.add_parser(
        "outbox",
        help="list outbox rows, or re-queue dead ones",
        description="List the newest outbox rows (alerts and their delivery state), or re-queue "
        "dead-lettered rows for another round of delivery by the running daemon.",
    )
    add_config(outbox)
    outbox.add_argument("--status", choices=["pending", "sent", "dead"], help="only this status")
    outbox.add_argument("--limit", type=int, default=20, help="at most this many rows (20)")
    outbox.add_argument("--json", action="store_true", help="one JSON object per row")
    outbox.add_argument(
        "--requeue", metavar="ID", type=int, nargs="+", help="re-queue these dead rows"
    )
    outbox.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monitor.app import store_for  # noqa: PLC0415 -- start-up time

    settings = settings_of(args)
    if args.limit < 1:
        fail(EXIT_USAGE, "--limit must be positive")
    store = store_for(settings)

    async def work() -> list[dict[str, Any]] | int:
        await store.open()
        try:
            if args.requeue:
                return await store.requeue(args.requeue, now=datetime.now(UTC))
            return await store.list_outbox(status=args.status, limit=args.limit)
        finally:
            await store.aclose()

    result = asyncio.run(work())
    if isinstance(result, int):
        print(f"re-queued {result} of {len(args.requeue)} row(s) (only dead rows are re-queued)")
        return EXIT_OK if result == len(args.requeue) else EXIT_SINK
    for row in result:
        event = row.get("event") or {}
        if args.json:
            print(json.dumps({**row, "event": event}, default=str, ensure_ascii=False))
            continue
        error = f"  {row['last_error']}" if row.get("last_error") else ""
        print(
            f"{row['id']:>6}  {row['short_id']}  {row['status']:<7}  {row['sink']:<12}  "
            f"{event.get('kind', '?'):<18}  {event.get('pair') or '-':<8}  "
            f"attempts={row['attempts']}{error}"
        )
    return EXIT_OK
