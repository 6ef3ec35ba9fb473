"""The command line. One module per command; each has ``register(sub)`` and is listed in
:data:`COMMANDS` -- adding a command is one new module and one line there. Only the module of the
command given is imported (``check FILE`` need not load the daemon's parts); ``--help`` imports
them all, so a command module imports at its top only what its parser needs (and what ``check``
loads anyway): the settings, the sinks, the store, the status page and aiohttp are imported inside
its handlers, their types under ``TYPE_CHECKING`` (``tests/test_cli_startup.py`` holds it to that).

Every failure ends in one line on stderr, never a traceback; unexpected bugs say so in one line too
(and log the traceback at debug). Exit codes are in :mod:`monitor.cli.common`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

import structlog

from monitor import __version__
from monitor.cli.common import EXIT_FETCH, EXIT_OK, EXIT_USAGE, Exit, Subparsers
from monitor.errors import ConfigError, FetchError, MonitorError
from monitor.logs import configure_logging

__all__ = ["COMMANDS", "main"]

log = structlog.get_logger("monitor.cli")

#: every command and the module (in ``monitor.cli``) that registers it, in the order ``--help``
#: lists them
COMMANDS: tuple[tuple[str, str], ...] = (
    ("run", "run"),
    ("demo", "demo"),
    ("status", "status"),
    ("check", "check"),
    ("history", "history"),
    ("alerts", "alerts"),
    ("test-sink", "test_sink"),
    ("config", "config"),
    ("silence", "silence"),
    ("rules", "rules"),
    ("validate", "validate"),
)


def _register(module: str) -> Callable[[Subparsers], None]:
    register: Callable[[Subparsers], None] = importlib.import_module(
        f"monitor.cli.{module}"
    ).register
    return register


def _parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser: of the command named in ``argv`` alone when there is one, else of all."""
    parser = argparse.ArgumentParser(
        prog="ticker-monitor",
        description="Watch pages carrying a rate ticker and alert on every change.",
    )
    parser.add_argument("--version", action="version", version=f"ticker-monitor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    named = [module for name, module in COMMANDS if name == first]
    for module in named or [module for _, module in COMMANDS]:
        _register(module)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 -- one exit per kind of failure
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser(argv).parse_args(argv)
    # Until a command configures its own: warnings and errors only, on stderr (stdout is output).
    configure_logging(level="warning", fmt="auto")
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        code = command(args)
        sys.stdout.flush()  # inside the try: a reader gone meanwhile is a BrokenPipeError here
    except Exit as exc:
        if exc.message:
            print(f"ticker-monitor: {exc.message}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"ticker-monitor: config error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except MonitorError as exc:
        print(f"ticker-monitor: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FETCH if isinstance(exc, FetchError) else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`... | head`): stop quietly, and keep Python from complaining
        # again when it flushes stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # the last line of defence: one line, never a traceback
        log.debug("unexpected_error", exc_info=True)
        print(f"ticker-monitor: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return code
