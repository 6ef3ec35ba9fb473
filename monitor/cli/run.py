"""``ticker-monitor run [--once]``: the daemon, or one round of checks for cron."""

from __future__ import annotations

import argparse
import asyncio

import structlog

from monitor.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    add_config,
    configure_for,
    fail,
    settings_of,
)

log = structlog.get_logger("monitor.cli")


def register(sub: Subparsers) -> None:
    run_ = sub.add_parser("run", help="run the daemon", description="Run the monitoring daemon.")
    add_config(run_)
    run_.add_argument(
        "--once",
        action="store_true",
        help="check every target once, deliver what is due, and exit",
    )
    run_.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # `check` starts faster without the daemon's imports
    from monitor.app import build_app  # noqa: PLC0415
    from monitor.daemon import Daemon  # noqa: PLC0415

    settings = settings_of(args)
    configure_for(settings)
    if not settings.targets:
        fail(EXIT_USAGE, "the configuration has no [[targets]]: nothing to watch")

    async def main() -> int:
        daemon = Daemon(await build_app(settings))
        if args.once:
            results = await daemon.run_once()
            failed = [r for r in results if r.outcome in ("fetch_failed", "parse_failed")]
            log.info("run_once_done", checks=len(results), failed=len(failed))
            return EXIT_OK
        await daemon.run_forever()
        return EXIT_OK

    return asyncio.run(main())
