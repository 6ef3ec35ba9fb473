"""What every command shares: exit codes, the one-line failure, ``--config`` and logging set-up.

Exit codes (documented in the README): 0 ok, 1 a sink test failed, 2 usage or configuration error,
3 no ticker found, 4 the source could not be fetched or read, 5 an alert is still undelivered
(``run --once``: pending or dead in the outbox).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NoReturn, TypeVar

from monitor.logs import configure_logging

if TYPE_CHECKING:
    from monitor.settings import Settings
    from monitor.store import ClusterStore

T = TypeVar("T")

EXIT_OK, EXIT_SINK, EXIT_USAGE, EXIT_NO_TICKER, EXIT_FETCH = 0, 1, 2, 3, 4
EXIT_UNDELIVERED = 5

CONFIG_HELP = "configuration file (default: $MONITOR_CONFIG, else config/monitor.toml)"

#: the top-level parser's sub-parsers, as each command module receives them (argparse exposes no
#: public name for the type, nor a runtime-subscriptable one)
if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction


class Exit(Exception):
    """Ends a command with an exit code and a one-line message."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def fail(code: int, message: str) -> NoReturn:
    raise Exit(code, message)


def add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help=CONFIG_HELP)


def settings_of(args: argparse.Namespace) -> Settings:
    # imported here: the settings pull in every sink's model, which `check` does not need
    from monitor.settings import load_settings  # noqa: PLC0415

    return load_settings(args.config)


def configure_for(settings: Settings, *, level: str | None = None) -> None:
    """Logging as the configuration says (``level`` overrides), secrets redacted."""
    from monitor.settings import secret_values  # noqa: PLC0415 -- as in settings_of

    m = settings.monitor
    configure_logging(level=level or m.log_level, fmt=m.log_format, secrets=secret_values(settings))


@contextlib.asynccontextmanager
async def opened_store(settings: Settings) -> AsyncIterator[ClusterStore]:
    """The configured store, open for the block (a command's short use of the database)."""
    from monitor.app import store_for  # noqa: PLC0415 -- start-up time of other commands

    store = store_for(settings)
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


def with_store(args: argparse.Namespace, work: Callable[[ClusterStore], Awaitable[T]]) -> T:
    """Open the configured store, run ``work`` on it, close it (for the reading commands)."""
    settings = settings_of(args)

    async def main() -> T:
        async with opened_store(settings) as store:
            return await work(store)

    return asyncio.run(main())


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ][\d:.]+)?(Z|[+-]\d{2}:?\d{2})?$")


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """``--since``: an age (``7d``, ``6h``, ``90m``, ``30``) or an ISO date/time (UTC unless it
    says otherwise)."""
    now = now or datetime.now(UTC)
    if _DATE.match(text.strip()):
        try:
            moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            fail(EXIT_USAGE, f"--since {text!r}: not a date")
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        from monitor.config_types import parse_duration  # noqa: PLC0415 -- start-up time

        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        fail(EXIT_USAGE, f"--since {text!r}: expected an age such as 7d, 6h, 30m or a date")


def columns(rows: Sequence[Sequence[str]], *, right: Collection[int] = ()) -> list[str]:
    """Rows as aligned text columns, two spaces apart; columns in ``right`` align right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []
    return [
        "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]
