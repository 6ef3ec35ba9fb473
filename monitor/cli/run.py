"""``ticker-monitor run [--once]``: the daemon, or one round of checks for cron.

``run --once`` exits, so that cron notices (the first that applies):

* 5 -- an alert is still undelivered: pending in the outbox (a send failed and will be retried by
  the next run) or dead-lettered (until re-queued or removed by retention);
* 4 -- a page could not be fetched;
* 3 -- a page held no ticker;
* 0 -- every check succeeded and nothing is left undelivered.

Each problem is one line on stderr. Silenced alerts are not undelivered: they were never meant to go.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

from monitor.cli.common import (
    EXIT_FETCH,
    EXIT_NO_TICKER,
    EXIT_OK,
    EXIT_UNDELIVERED,
    EXIT_USAGE,
    Subparsers,
    add_config,
    configure_for,
    fail,
    opened_store,
    settings_of,
)
from monitor.models import DeliveryStatus

if TYPE_CHECKING:
    from monitor.check import CheckResult
    from monitor.settings import Settings
    from monitor.store import OutboxCounts

log = structlog.get_logger("monitor.cli")


def register(sub: Subparsers) -> None:
    run_ = sub.add_parser(
        "run",
        help="run the daemon",
        description="Run the monitoring daemon. With --once: check every target once, deliver "
        "what is due and exit 0 when all went well, 3 when a page held no ticker, 4 when a page "
        "could not be fetched, 5 when an alert is still pending or dead in the outbox.",
    )
    add_config(run_)
    run_.add_argument(
        "--once",
        action="store_true",
        help="check every target once, deliver what is due, and exit (for cron; see exit codes)",
    )
    run_.set_defaults(func=run)


def once_exit_code(results: Sequence[CheckResult], counts: Sequence[OutboxCounts]) -> int:
    """``run --once``'s exit code from its checks and the outbox after delivery (module docstring);
    prints one line per problem on stderr."""
    undelivered = {
        status: sum(c.count for c in counts if c.status == status)
        for status in (DeliveryStatus.PENDING, DeliveryStatus.DEAD)
    }
    fetch = [r.target for r in results if r.outcome == "fetch_failed"]
    parse = [r.target for r in results if r.outcome == "parse_failed"]
    if fetch:
        print(f"ticker-monitor: could not fetch: {', '.join(fetch)}", file=sys.stderr)
    if parse:
        print(f"ticker-monitor: no ticker found: {', '.join(parse)}", file=sys.stderr)
    if any(undelivered.values()):
        print(
            f"ticker-monitor: undelivered alerts: {undelivered[DeliveryStatus.PENDING]} pending "
            f"(retried by the next run), {undelivered[DeliveryStatus.DEAD]} dead "
            "(see: ticker-monitor alerts --status dead)",
            file=sys.stderr,
        )
        return EXIT_UNDELIVERED
    if fetch:
        return EXIT_FETCH
    return EXIT_NO_TICKER if parse else EXIT_OK


async def _outbox_counts(settings: Settings) -> list[OutboxCounts]:
    async with opened_store(settings) as store:
        return await store.outbox_counts()


def run(args: argparse.Namespace) -> int:
    # `check` starts faster without the daemon's imports
    from monitor.app import build_app  # noqa: PLC0415
    from monitor.daemon import Daemon  # noqa: PLC0415

    settings = settings_of(args)
    configure_for(settings)
    if not settings.targets:
        fail(EXIT_USAGE, "the configuration has no [[targets]]: nothing to watch")
    for problem in settings.unrouted_targets():  # `validate` refuses them; a history-only setup
        log.warning("target_unrouted", problem=problem)

    async def main() -> int:
        daemon = Daemon(await build_app(settings))
        if not args.once:
            await daemon.run_forever()
            return EXIT_OK
        results = await daemon.run_once()
        counts = await _outbox_counts(settings)
        failed = [r for r in results if r.outcome in ("fetch_failed", "parse_failed")]
        log.info("run_once_done", checks=len(results), failed=len(failed))
        return once_exit_code(results, counts)

    return asyncio.run(main())
