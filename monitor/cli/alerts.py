"""``ticker-monitor alerts``: the alerts in the outbox and their delivery, and ``alerts retry``.

One line (or one JSON object) per outbox row — one alert bound for one sink — newest first: when
it was detected, its dedup id (the ``#3f9a1c2e`` people see in Slack and email), the sink, the
status (whatever the outbox holds: ``pending``, ``sent``, ``dead``, ...), attempts, what it is and
the last error. ``alerts retry ID ...`` / ``--all-dead`` makes dead letters pending again; the
running daemon sends them within its next poll.

Exit codes: 0 ok; 1 ``retry`` found a row that is not dead (nothing to do for it); 2 usage, or an
id that matches no row or more than one.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from monitor.cli.common import (
    EXIT_OK,
    EXIT_SINK,
    EXIT_USAGE,
    Subparsers,
    add_config,
    fail,
    parse_since,
    with_store,
)

if TYPE_CHECKING:
    from monitor.store import OutboxRow, Store

_SHORT_ID = re.compile(r"^#?([0-9a-f]{4,24})$")


def register(sub: Subparsers) -> None:
    alerts = sub.add_parser(
        "alerts",
        help="list alerts and their delivery per sink; retry dead letters",
        description="List the alerts in the outbox, newest first: one line per (alert, sink). "
        "`alerts retry` re-queues dead letters.",
        epilog="exit codes: 0 ok, 1 a retried row was not dead, 2 usage or unknown id",
    )
    add_config(alerts)
    alerts.add_argument(
        "--status",
        metavar="STATUS",
        help="only rows with this status (pending, sent, dead, or any the outbox holds)",
    )
    alerts.add_argument("--since", metavar="AGE", help="only alerts since then: 1d, 6h, 2025-05-16")
    alerts.add_argument("--sink", metavar="NAME", help="only this sink's rows")
    alerts.add_argument("--limit", type=int, default=50, help="at most this many rows (50)")
    alerts.add_argument("--json", action="store_true", help="one JSON object per line")
    actions = alerts.add_subparsers(dest="action", metavar="ACTION")
    retry = actions.add_parser(
        "retry",
        help="make dead letters pending again",
        description="Re-queue dead-lettered alerts (attempts reset, due now, max_age counted "
        "from now); the running daemon delivers them within its next poll (at most 30 s).",
    )
    add_config(retry)
    retry.add_argument(
        "ids", metavar="DEDUP_ID", nargs="*", help="dedup ids (#3f9a1c2e or 3f9a1c2e)"
    )
    retry.add_argument("--all-dead", action="store_true", help="every dead letter")
    retry.set_defaults(func=run_retry)
    alerts.set_defaults(func=run)


def as_json(row: OutboxRow) -> dict[str, Any]:
    # imported here, as in every command: `--help` imports every command module
    from monitor.status import alert_text  # noqa: PLC0415 -- start-up time

    ev = row.event
    return {
        "id": row.id,
        "dedup_id": row.short_id,
        "dedup_key": row.dedup_key,
        "time": (ev.observed_at if ev else row.created_at).isoformat(),
        "sink": row.sink,
        "target": row.target,
        "status": row.status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "next_attempt_at": row.next_attempt_at.isoformat() if row.status == "pending" else None,
        "sent_at": row.sent_at.isoformat() if row.sent_at else None,
        "kind": ev.kind.value if ev else None,
        "pair": ev.pair if ev else None,
        "title": alert_text(row),
        "event": ev.to_json() if ev else None,
    }


def _line(row: OutboxRow) -> str:
    from monitor import render  # noqa: PLC0415 -- start-up time
    from monitor.status import alert_text  # noqa: PLC0415 -- start-up time

    at = (row.event.observed_at if row.event else row.created_at).astimezone(UTC)
    error = f"  {render.sanitize(row.last_error, render.DETAIL_LIMIT)}" if row.last_error else ""
    return (
        f"{at:%Y-%m-%d %H:%M:%S}Z  #{row.short_id}  {row.sink:<12}  {row.status:<8}  "
        f"{row.attempts:>3}  {alert_text(row)}{error}"
    )


def run(args: argparse.Namespace) -> int:
    if args.limit < 1:
        fail(EXIT_USAGE, "--limit must be positive")
    since = parse_since(args.since) if args.since else None

    async def work(store: Store) -> list[OutboxRow]:
        rows = await store.outbox_rows(status=args.status, since=since, limit=args.limit)
        return [r for r in rows if args.sink is None or r.sink == args.sink]

    rows: list[OutboxRow] = with_store(args, work)
    if args.json:
        for row in rows:
            print(json.dumps(as_json(row), ensure_ascii=False))
        return EXIT_OK
    if rows:
        print(f"{'DETECTED (UTC)':<20}  {'ID':<9}  {'SINK':<12}  {'STATUS':<8}  TRY  ALERT")
    for row in rows:
        print(_line(row))
    return EXIT_OK


def run_retry(args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.all_dead):
        fail(EXIT_USAGE, "name dedup ids to retry, or --all-dead (not both)")
    prefixes = []
    for raw in args.ids:
        m = _SHORT_ID.match(raw.strip().lower())
        if m is None:
            fail(EXIT_USAGE, f"{raw!r} is not a dedup id (8 hex digits, e.g. #3f9a1c2e)")
        prefixes.append(m.group(1))

    async def work(store: Store) -> tuple[list[OutboxRow], list[str], int]:
        if args.all_dead:
            dead = await store.outbox_rows(status="dead", limit=1_000_000)
            return dead, [], await store.requeue([r.id for r in dead], now=datetime.now(UTC))
        chosen: list[OutboxRow] = []
        problems = []
        for prefix in prefixes:
            found = await store.outbox_rows(key_prefix=prefix, limit=2)
            if len(found) != 1:
                problems.append(f"#{prefix}: " + ("no such alert" if not found else "ambiguous"))
            else:
                chosen.extend(found)
        if problems:
            return chosen, problems, 0
        dead_ids = [r.id for r in chosen if r.status == "dead"]
        return chosen, [], await store.requeue(dead_ids, now=datetime.now(UTC))

    rows, problems, requeued = with_store(args, work)
    if problems:
        fail(EXIT_USAGE, "; ".join(problems) + " (see `ticker-monitor alerts`)")
    for row in rows:
        if row.status == "dead":
            print(f"#{row.short_id} {row.sink}: re-queued")
        else:
            print(f"#{row.short_id} {row.sink}: not re-queued: it is {row.status}, not dead")
    if args.all_dead:
        print(f"re-queued {requeued} dead letter(s)")
        return EXIT_OK
    return EXIT_OK if requeued == len(rows) else EXIT_SINK
