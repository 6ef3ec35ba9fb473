"""The command line: ``run``, ``check``, ``test-sink``, ``outbox`` and ``validate``.

Exit codes (documented in the README): 0 ok, 1 a sink test failed, 2 usage or configuration error,
3 no ticker found, 4 the source could not be fetched or read. Every failure ends in one line on
stderr, never a traceback; unexpected bugs say so in one line too (and log the traceback at debug).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import httpx
import structlog

from monitor import __version__
from monitor.errors import ConfigError, FetchError, MonitorError, ParseError, SinkError
from monitor.fetch import FetchPolicy, fetch_once, safe_url
from monitor.logs import configure_logging
from monitor.models import Snapshot, dec_str
from monitor.parse import Grammar, parse
from monitor.settings import Settings, load_settings, secret_values

EXIT_OK, EXIT_SINK, EXIT_USAGE, EXIT_NO_TICKER, EXIT_FETCH = 0, 1, 2, 3, 4
DEFAULT_MAX_BYTES = 20_000_000

log = structlog.get_logger("monitor.cli")


class _Exit(Exception):
    """Control flow, not an error: ends a command with an exit code and a one-line message."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _fail(code: int, message: str) -> NoReturn:
    raise _Exit(code, message)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ticker-monitor",
        description="Watch pages carrying a rate ticker and alert on every change.",
    )
    parser.add_argument("--version", action="version", version=f"ticker-monitor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    config_help = "configuration file (default: $MONITOR_CONFIG, else config/monitor.toml)"
    run = sub.add_parser("run", help="run the daemon", description="Run the monitoring daemon.")
    run.add_argument("--config", metavar="PATH", help=config_help)
    run.add_argument(
        "--once",
        action="store_true",
        help="check every target once, deliver what is due, and exit",
    )

    check = sub.add_parser(
        "check",
        help="read the ticker of one page and print its quotes",
        description="Read the ticker of one page (a URL, a file, or - for stdin).",
    )
    check.add_argument("source", metavar="SOURCE", help="http(s):// URL, file path, or - for stdin")
    check.add_argument("--selector", metavar="CSS", help="only read the elements this selects")
    check.add_argument("--pattern", metavar="REGEX", help="a per-site grammar (named groups)")
    check.add_argument("--quote-currency", metavar="CUR", help="quote currency the page implies")
    check.add_argument(
        "--decimal-separator", choices=[".", ","], default=".", help="decimal separator"
    )
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.add_argument("--timeout", type=float, default=30.0, help="fetch deadline in seconds")
    check.add_argument(
        "--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="refuse larger pages"
    )

    test_sink = sub.add_parser(
        "test-sink",
        help="send a sample alert through one configured sink",
        description="Send a sample alert through one configured sink now and report the outcome.",
    )
    test_sink.add_argument("name", metavar="NAME", help="the sink's name, as in [sinks.NAME]")
    test_sink.add_argument("--config", metavar="PATH", help=config_help)

    outbox = sub.add_parser(
        "outbox",
        help="list outbox rows, or re-queue dead ones",
        description="List the newest outbox rows (alerts and their delivery state), or re-queue "
        "dead-lettered rows for another round of delivery by the running daemon.",
    )
    outbox.add_argument("--config", metavar="PATH", help=config_help)
    outbox.add_argument("--status", choices=["pending", "sent", "dead"], help="only this status")
    outbox.add_argument("--limit", type=int, default=20, help="at most this many rows (20)")
    outbox.add_argument("--json", action="store_true", help="one JSON object per row")
    outbox.add_argument(
        "--requeue", metavar="ID", type=int, nargs="+", help="re-queue these dead rows"
    )

    validate = sub.add_parser(
        "validate",
        help="check the configuration and exit",
        description="Load and validate the configuration; print a summary.",
    )
    validate.add_argument("--config", metavar="PATH", help=config_help)
    return parser


# --- check -----------------------------------------------------------------------------------


def _read_source(source: str, timeout: float, max_bytes: int) -> tuple[bytes, str]:
    if source.startswith(("http://", "https://")):
        policy = FetchPolicy(timeout=timeout, max_bytes=max_bytes)
        user_agent = f"ticker-monitor/{__version__}"
        try:
            result = asyncio.run(fetch_once(source, policy=policy, user_agent=user_agent))
        except FetchError as exc:
            _fail(EXIT_FETCH, f"cannot fetch {safe_url(source)}: {exc}")
        return result.body, source
    if "://" in source:
        _fail(EXIT_USAGE, f"unsupported source {source!r}: use an http(s):// URL, a path or -")
    try:
        if source == "-":
            data = sys.stdin.buffer.read(max_bytes + 1)
        else:
            with Path(source).open("rb") as handle:
                data = handle.read(max_bytes + 1)
    except OSError as exc:
        _fail(EXIT_FETCH, f"cannot read {source}: {exc.strerror or exc}")
    if len(data) > max_bytes:
        _fail(EXIT_FETCH, f"{source} is larger than {max_bytes} bytes (see --max-bytes)")
    return data, source


def _table(snapshot: Snapshot) -> str:
    rows = [("PAIR", "RATE", "CHANGE")]
    for q in snapshot.quotes:
        change = "" if q.change_pct is None else f"{dec_str(q.change_pct)}%"
        rows.append((q.pair, dec_str(q.rate), change))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [
        f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}".rstrip() for r in rows
    ]
    if snapshot.page_date:
        lines.append(f"page date: {snapshot.page_date.isoformat()}")
    return "\n".join(lines)


def _check(args: argparse.Namespace) -> int:
    try:
        grammar = Grammar.from_config(
            pattern=args.pattern,
            quote_currency=args.quote_currency,
            decimal_separator=args.decimal_separator,
        )
    except ValueError as exc:
        _fail(EXIT_USAGE, str(exc))
    if args.max_bytes < 1 or args.timeout <= 0:
        _fail(EXIT_USAGE, "--max-bytes and --timeout must be positive")
    body, source = _read_source(args.source, args.timeout, args.max_bytes)
    try:
        snapshot = parse(body, selector=args.selector, grammar=grammar)
    except ParseError as exc:
        _fail(EXIT_NO_TICKER, f"no ticker found in {safe_url(source)}: {exc}")
    if snapshot.conflicts:
        log.warning("ticker_repeats_disagree", pairs=list(snapshot.conflicts), kept="first block")
    if args.json:
        out: dict[str, Any] = {
            "source": source,
            "page_date": snapshot.page_date.isoformat() if snapshot.page_date else None,
            "quotes": [q.to_json() for q in snapshot.quotes],
        }
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(_table(snapshot))
    return EXIT_OK


# --- commands that read the configuration ----------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def _logging(settings: Settings, *, level: str | None = None) -> None:
    m = settings.monitor
    configure_logging(level=level or m.log_level, fmt=m.log_format, secrets=secret_values(settings))


def _run(args: argparse.Namespace) -> int:
    from monitor.daemon import Daemon  # noqa: PLC0415 -- `check` starts faster without the daemon's imports

    settings = _settings(args)
    _logging(settings)
    if not settings.targets:
        _fail(EXIT_USAGE, "the configuration has no [[targets]]: nothing to watch")
    daemon = Daemon(settings)
    if args.once:
        results = asyncio.run(daemon.run_once())
        failed = [r for r in results if r.outcome in ("fetch_failed", "parse_failed")]
        log.info("run_once_done", checks=len(results), failed=len(failed))
        return EXIT_OK
    asyncio.run(daemon.run_forever())
    return EXIT_OK


def _test_sink(args: argparse.Namespace) -> int:
    from monitor.sinks.build import build_sinks, sample_delivery  # noqa: PLC0415 -- as in _run

    settings = _settings(args)
    # the outcome is the one line printed below; the sink's own warnings would only repeat it
    _logging(settings, level="critical")
    if args.name not in settings.sinks:
        known = ", ".join(sorted(settings.sinks)) or "none"
        _fail(EXIT_USAGE, f"no sink named {args.name!r} (configured: {known})")

    async def send() -> None:
        async with httpx.AsyncClient() as http:
            sinks = build_sinks({args.name: settings.sinks[args.name]}, http=http)
            sink = sinks[args.name]
            try:
                await sink.send([sample_delivery(args.name, datetime.now(UTC))])
            finally:
                await sink.aclose()

    try:
        asyncio.run(send())
    except SinkError as exc:
        kind = "temporary" if exc.retryable else "permanent"
        _fail(EXIT_SINK, f"sink {args.name!r} failed ({kind}): {exc}")
    print(f"sink {args.name!r}: sample alert accepted")
    return EXIT_OK


def _outbox(args: argparse.Namespace) -> int:
    from monitor.store.open import open_store  # noqa: PLC0415 -- as in _run

    settings = _settings(args)
    if args.limit < 1:
        _fail(EXIT_USAGE, "--limit must be positive")
    store = open_store(settings.monitor.database.get_secret_value())

    async def work() -> list[dict[str, Any]] | int:
        await store.open()
        try:
            if args.requeue:
                return await store.requeue(args.requeue, now=datetime.now(UTC))
            return await store.list_outbox(status=args.status, limit=args.limit)
        finally:
            await store.aclose()

    result = asyncio.run(work())
    if isinstance(result, int):
        print(f"re-queued {result} of {len(args.requeue)} row(s) (only dead rows are re-queued)")
        return EXIT_OK if result == len(args.requeue) else EXIT_SINK
    for row in result:
        event = row.get("event") or {}
        if args.json:
            print(json.dumps({**row, "event": event}, default=str, ensure_ascii=False))
            continue
        error = f"  {row['last_error']}" if row.get("last_error") else ""
        print(
            f"{row['id']:>6}  {row['short_id']}  {row['status']:<7}  {row['sink']:<12}  "
            f"{event.get('kind', '?'):<18}  {event.get('pair') or '-':<8}  "
            f"attempts={row['attempts']}{error}"
        )
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from monitor.sinks.build import build_sinks  # noqa: PLC0415 -- as in _run

    settings = _settings(args)

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


_COMMANDS = {
    "check": _check,
    "run": _run,
    "test-sink": _test_sink,
    "outbox": _outbox,
    "validate": _validate,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Until a command configures its own: warnings and errors only, on stderr (stdout is output).
    configure_logging(level="warning", fmt="auto")
    try:
        return _COMMANDS[args.command](args)
    except _Exit as exc:
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
    except Exception as exc:  # the last line of defence: one line, never a traceback
        log.debug("unexpected_error", exc_info=True)
        print(f"ticker-monitor: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
