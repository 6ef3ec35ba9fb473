"""``ticker-monitor validate``: load and check the configuration, build every sink, send nothing."""

from __future__ import annotations

import argparse
import asyncio

from monitor.cli.common import EXIT_OK, Subparsers, add_config, settings_of


def register(sub: Subparsers) -> None:
    validate = sub.add_parser(
        "validate",
        help="check the configuration and exit",
        description="Load and validate the configuration; print a summary.",
    )
    add_config(validate)
    validate.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monitor.app import open_sinks  # noqa: PLC0415 -- start-up time

    settings = settings_of(args)

    async def build() -> None:  # builds every sink (e.g. parses Apprise URLs), sends nothing
        async with open_sinks(settings):
            pass

    asyncio.run(build())
    print(
        f"configuration ok: {len(settings.targets)} target(s), {len(settings.rules)} rule(s), "
        f"{len(settings.sinks)} sink(s)"
    )
    return EXIT_OK
