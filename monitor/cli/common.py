"""What every command shares: exit codes, the one-line failure, ``--config`` and logging set-up.

Exit codes (documented in the README): 0 ok, 1 a sink test failed, 2 usage or configuration error,
3 no ticker found, 4 the source could not be fetched or read, 5 an alert is still undelivered
(``run --once``: pending or dead in the outbox).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, NoReturn

from monitor.logs import configure_logging
from monitor.settings import Settings, load_settings, secret_values

if TYPE_CHECKING:
    from monitor.store import Store

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
    return load_settings(args.config)


def configure_for(settings: Settings, *, level: str | None = None) -> None:
    """Logging as the configuration says (``level`` overrides), secrets redacted."""
    m = settings.monitor
    configure_logging(level=level or m.log_level, fmt=m.log_format, secrets=secret_values(settings))


@contextlib.asynccontextmanager
async def opened_store(settings: Settings) -> AsyncIterator[Store]:
    """The configured store, open for the block (a command's short use of the database)."""
    from monitor.store.open import open_store  # noqa: PLC0415 -- start-up time of other commands

    store = open_store(settings.monitor.database.get_secret_value())
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()
