"""``ticker-monitor validate``: load and check the configuration, build every sink, send nothing."""

from __future__ import annotations

import argparse
import asyncio

import httpx

from monitor.cli.common import EXIT_OK, Subparsers, add_config, settings_of
from monitor.errors import ConfigError


def register(sub: Subparsers) -> None:
    validate = sub.add_parser(
        "validate",
        help="check the configuration and exit",
        description="Load and validate the configuration (every key, every rule: one that "
        "contradicts itself or can never fire, a target no rule routes), build every sink, and "
        "print a summary. Exit 2 with one line per problem.",
    )
    add_config(validate)
    validate.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monitor.sinks.build import build_sinks  # noqa: PLC0415 -- start-up time

    settings = settings_of(args)
    unrouted = settings.unrouted_targets()
    if unrouted:  # `run` starts anyway (to record history); a new setup more likely forgot a rule
        raise ConfigError(unrouted)

    async def build() -> None:  # builds every sink (e.g. parses Apprise URLs), sends nothing
        async with httpx.AsyncClient() as http:
            for sink in build_sinks(settings.sinks, http=http).values():
                await sink.aclose()

    asyncio.run(build())
    print(
        f"configuration ok: {len(settings.targets)} target(s), {len(settings.rules)} rule(s), "
        f"{len(settings.sinks)} sink(s)"
    )
    return EXIT_OK
