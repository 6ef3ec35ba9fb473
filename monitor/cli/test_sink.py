"""``ticker-monitor test-sink NAME``: send a test alert through one configured sink now.

The alert is one pair move of a configured target (``--target``, default the first; ``example``
when none is configured): the pair ``TEST/USD``, its rate and its change percentage, as two events
of one check, so it shows the one-line-per-pair message every sink sends. It is marked as a test
(``[test]`` before its title and lines, ``"test": true`` for programs) and says so in its detail.
It bypasses the outbox: no retry, nothing written to the state database.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from monitor.cli.common import (
    EXIT_OK,
    EXIT_SINK,
    EXIT_USAGE,
    Subparsers,
    add_config,
    configure_for,
    fail,
    settings_of,
)
from monitor.errors import SinkError
from monitor.models import Delivery, Event, EventKind, Reading, dedup_key

if TYPE_CHECKING:
    from monitor.settings import Settings

TEST_PAIR = "TEST/USD"
EXAMPLE_TARGET, EXAMPLE_URL = "example", "https://example.com/"
TEST_DETAIL = "test alert sent by 'ticker-monitor test-sink': no action needed"


def register(sub: Subparsers) -> None:
    test_sink = sub.add_parser(
        "test-sink",
        help="send a test alert through one configured sink",
        description="Send a test alert (marked as a test) through one configured sink now and "
        "report the outcome.",
    )
    test_sink.add_argument("name", metavar="NAME", help="the sink's name, as in [sinks.NAME]")
    test_sink.add_argument(
        "--target", help="the target the test alert names (default: the first configured)"
    )
    add_config(test_sink)
    test_sink.set_defaults(func=run)


def sample_deliveries(
    settings: Settings, sink: str, target: str | None, now: datetime
) -> list[Delivery]:
    """The test alert for ``sink``: a ``TEST/USD`` move of a configured target (or ``example``)."""
    from monitor.fetch import safe_url  # noqa: PLC0415 -- start-up time

    if target is not None:
        names = [t.name for t in settings.targets]
        if target not in names:
            fail(
                EXIT_USAGE, f"no target named {target!r} (configured: {', '.join(names) or 'none'})"
            )
        name, url = target, safe_url(settings.target(target).url)
    elif settings.targets:
        # the page as a check reports it: without credentials or query
        name, url = settings.targets[0].name, safe_url(settings.targets[0].url)
    else:
        name, url = EXAMPLE_TARGET, EXAMPLE_URL
    old, new = Reading(Decimal("1.0000"), Decimal("0")), Reading(Decimal("1.0025"), Decimal("0.25"))
    out: list[Delivery] = []
    for kind in (EventKind.RATE_CHANGED, EventKind.CHANGE_PCT_CHANGED):
        event = Event(
            kind=kind,
            target=name,
            pair=TEST_PAIR,
            old=old,
            new=new,
            observed_at=now,
            page_date=now.date(),
            source_url=url,
            detail=TEST_DETAIL,
            test=True,
        )
        key = dedup_key(event, sink)
        out.append(Delivery(len(out), key, sink, event, check_id="test-sink", created_at=now))
    return out


def run(args: argparse.Namespace) -> int:
    from monitor.app import open_sinks  # noqa: PLC0415 -- start-up time

    settings = settings_of(args)
    # the outcome is the one line printed below; the sink's own warnings would only repeat it
    configure_for(settings, level="critical")
    if args.name not in settings.sinks:
        known = ", ".join(sorted(settings.sinks)) or "none"
        fail(EXIT_USAGE, f"no sink named {args.name!r} (configured: {known})")
    batch = sample_deliveries(settings, args.name, args.target, datetime.now(UTC))

    async def send() -> None:
        async with open_sinks(settings, [args.name]) as sinks:
            await sinks[args.name].send(batch)

    try:
        asyncio.run(send())
    except SinkError as exc:
        kind = "temporary" if exc.retryable else "permanent"
        fail(EXIT_SINK, f"sink {args.name!r} failed ({kind}): {exc}")
    print(f"sink {args.name!r}: test alert for {batch[0].event.target} accepted")
    return EXIT_OK
