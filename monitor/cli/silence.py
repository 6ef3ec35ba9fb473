"""``ticker-monitor silence add|list|expire``: mute a target's alerts for a while, in the database.

A silence lives in the state database, so every instance sharing it honours it at its next check.
A silenced alert is recorded in the outbox as ``silenced`` and never sent; when the silence ends,
the state simply moves on (nothing is sent after the fact).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from monitor import render
from monitor.cli.common import EXIT_OK, EXIT_USAGE, Subparsers, add_config, fail, opened_store
from monitor.models import EventKind, Silence, new_silence_id

if TYPE_CHECKING:
    from monitor.settings import Settings

_PAIR = re.compile(r"^[A-Z0-9]{2,10}/[A-Z0-9]{2,10}$")


def register(sub: Subparsers) -> None:
    silence = sub.add_parser(
        "silence",
        help="silence a target's alerts for a while (stored in the database)",
        description="Silence alerts: while a silence is active, the alerts it matches are recorded "
        "as silenced instead of sent, by every instance sharing the database.",
    )
    actions = silence.add_subparsers(dest="action", metavar="ACTION", required=True)

    add = actions.add_parser(
        "add",
        help="add a silence; prints its id",
        description="Add a silence and print its id. A --pair silence covers that pair's events "
        "only: an outage of the target (source_down ...) still alerts.",
    )
    add.add_argument("--target", required=True, help="the target's name, as in [[targets]]")
    add.add_argument("--pair", help="only this pair's events (e.g. TMT/USD)")
    add.add_argument(
        "--kind", choices=[k.value for k in EventKind], help="only events of this kind"
    )
    add.add_argument(
        "--for", dest="duration", required=True, metavar="DURATION", help="e.g. 30m, 2h, 1d"
    )
    add.add_argument("--comment", default="", help="why (shown by silence list)")
    add.add_argument("--author", default=None, help="who (default: the login name)")
    add_config(add)
    add.set_defaults(func=run_add)

    listing = actions.add_parser(
        "list", help="list active and future silences", description="List silences."
    )
    listing.add_argument("--all", action="store_true", help="include silences that have ended")
    listing.add_argument("--json", action="store_true", help="one JSON object per silence")
    add_config(listing)
    listing.set_defaults(func=run_list)

    expire = actions.add_parser(
        "expire", help="end a silence now", description="End a silence now."
    )
    expire.add_argument("id", metavar="ID", help="the id that silence add printed")
    add_config(expire)
    expire.set_defaults(func=run_expire)


def _settings(args: argparse.Namespace) -> Settings:
    from monitor.settings import load_settings  # noqa: PLC0415 -- start-up time

    return load_settings(args.config)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _author() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container
        return ""


def _new_silence(args: argparse.Namespace, settings: Settings, now: datetime) -> Silence:
    names = [t.name for t in settings.targets]
    if args.target not in names:
        fail(
            EXIT_USAGE,
            f"no target named {args.target!r} (configured: {', '.join(names) or 'none'})",
        )
    if args.pair is not None:
        if not _PAIR.match(args.pair):
            fail(EXIT_USAGE, f"--pair: expected a pair such as TMT/USD, not {args.pair!r}")
        watched = settings.target(args.target).pairs
        if watched and args.pair not in watched:
            fail(EXIT_USAGE, f"--pair: target {args.target!r} watches only {', '.join(watched)}")
    from monitor.config_types import parse_duration  # noqa: PLC0415 -- start-up time

    try:
        seconds = parse_duration(args.duration)
    except ValueError as exc:
        fail(EXIT_USAGE, f"--for: {exc}")
    if seconds <= 0:
        fail(EXIT_USAGE, "--for: a silence must last longer than 0 s")
    return Silence(
        id=new_silence_id(),
        target=args.target,
        pair=args.pair,
        kind=EventKind(args.kind) if args.kind else None,
        starts_at=now,
        ends_at=now + timedelta(seconds=seconds),
        comment=render.sanitize(args.comment, render.DETAIL_LIMIT),
        created_by=render.sanitize(args.author if args.author is not None else _author(), 80),
    )


def run_add(args: argparse.Namespace) -> int:
    settings = _settings(args)
    now = datetime.now(UTC)
    silence = _new_silence(args, settings, now)

    async def work() -> None:
        async with opened_store(settings) as store:
            await store.add_silence(silence, now=now)

    asyncio.run(work())
    print(silence.id)
    return EXIT_OK


def _scope(silence: Silence) -> str:
    """``timesca``, ``timesca TMT/USD``, ``timesca TMT/USD threshold``."""
    parts = [silence.target, silence.pair or "", silence.kind.value if silence.kind else ""]
    return render.sanitize(" ".join(p for p in parts if p), 200)


def _row(silence: Silence, now: datetime) -> dict[str, object]:
    state = "active" if silence.active(now) else ("ended" if silence.ends_at <= now else "future")
    return {
        "id": silence.id,
        "state": state,
        "target": silence.target,
        "pair": silence.pair,
        "kind": silence.kind.value if silence.kind else None,
        "starts_at": _when(silence.starts_at),
        "ends_at": _when(silence.ends_at),
        "comment": silence.comment,
        "created_by": silence.created_by,
    }


def run_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    now = datetime.now(UTC)

    async def work() -> list[Silence]:
        async with opened_store(settings) as store:
            return await store.list_silences(now=now, ended=args.all)

    rows = [_row(s, now) for s in asyncio.run(work())]
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return EXIT_OK
    if not rows:
        print("no silences" if args.all else "no active silences")
        return EXIT_OK
    head = ("ID", "STATE", "TARGET", "PAIR", "KIND", "ENDS (UTC)", "BY", "COMMENT")
    table = [head] + [
        (
            str(r["id"]),
            str(r["state"]),
            render.sanitize(str(r["target"]), 80),
            str(r["pair"] or "*"),
            str(r["kind"] or "*"),
            str(r["ends_at"]),
            render.sanitize(str(r["created_by"]), 40) or "-",
            render.sanitize(str(r["comment"]), 80),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(head) - 1)]
    for line in table:
        cells = [f"{cell:<{widths[i]}}" for i, cell in enumerate(line[:-1])]
        print("  ".join([*cells, line[-1]]).rstrip())
    return EXIT_OK


def run_expire(args: argparse.Namespace) -> int:
    settings = _settings(args)
    now = datetime.now(UTC)

    async def work() -> Silence | None:
        async with opened_store(settings) as store:
            return await store.expire_silence(args.id, now=now)

    before = asyncio.run(work())
    if before is None:
        fail(EXIT_USAGE, f"no silence with id {args.id!r} (see: ticker-monitor silence list --all)")
    if before.ends_at <= now:
        print(f"silence {before.id} had already ended at {_when(before.ends_at)}")
    else:
        print(f"silence {before.id} expired: {_scope(before)} alerts are sent again")
    return EXIT_OK
