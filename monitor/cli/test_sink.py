"""``ticker-monitor test-sink NAME``: send a sample alert through one configured sink now."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

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


def register(sub: Subparsers) -> None:
    test_sink = sub.add_parser(
        "test-sink",
        help="send a sample alert through one configured sink",
        description="Send a sample alert through one configured sink now and report the outcome.",
    )
    test_sink.add_argument("name", metavar="NAME", help="the sink's name, as in [sinks.NAME]")
    add_config(test_sink)
    test_sink.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monitor.app import open_sinks  # noqa: PLC0415 -- start-up time
    from monitor.sinks.sample import sample_delivery  # noqa: PLC0415 -- start-up time

    settings = settings_of(args)
    # the outcome is the one line printed below; the sink's own warnings would only repeat it
    configure_for(settings, level="critical")
    if args.name not in settings.sinks:
        known = ", ".join(sorted(settings.sinks)) or "none"
        fail(EXIT_USAGE, f"no sink named {args.name!r} (configured: {known})")

    async def send() -> None:
        async with open_sinks(settings, [args.name]) as sinks:
            await sinks[args.name].send([sample_delivery(args.name, datetime.now(UTC))])

    try:
        asyncio.run(send())
    except SinkError as exc:
        kind = "temporary" if exc.retryable else "permanent"
        fail(EXIT_SINK, f"sink {args.name!r} failed ({kind}): {exc}")
    print(f"sink {args.name!r}: sample alert accepted")
    return EXIT_OK
