"""The command line. One module per command; each has ``register(sub)`` and is listed in
:data:`COMMANDS` -- adding a command is one new module and one line there.

Every failure ends in one line on stderr, never a traceback; unexpected bugs say so in one line too
(and log the traceback at debug). Exit codes are in :mod:`monitor.cli.common`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import structlog

from monitor import __version__
from monitor.cli import (
    alerts,
    check,
    config,
    demo,
    history,
    rules,
    run,
    silence,
    status,
    test_sink,
    validate,
)
from monitor.cli.common import EXIT_FETCH, EXIT_OK, EXIT_USAGE, Exit, Subparsers
from monitor.errors import ConfigError, FetchError, MonitorError
from monitor.logs import configure_logging

__all__ = ["COMMANDS", "main"]

log = structlog.get_logger("monitor.cli")

#: every command's ``register``, in the order ``--help`` lists them
COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    run.register,
    demo.register,
    status.register,
    check.register,
    history.register,
    alerts.register,
    test_sink.register,
    config.register,
    silence.register,
    rules.register,
    validate.register,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ticker-monitor",
        description="Watch pages carrying a rate ticker and alert on every change.",
    )
    parser.add_argument("--version", action="version", version=f"ticker-monitor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 -- one exit per kind of failure
    args = _parser().parse_args(argv)
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
