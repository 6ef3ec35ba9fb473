"""``ticker-monitor check SOURCE``: read one page's (or JSON feed's) ticker and print it."""

from __future__ import annotations

import argparse
import json
from typing import Any

import structlog

from monitor.charset import codec_for
from monitor.cli.common import (
    EXIT_NO_TICKER,
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    fail,
)
from monitor.cli.source import read_source
from monitor.errors import ParseError
from monitor.feed import compile_query
from monitor.models import Quote, Snapshot
from monitor.parse import Explanation, Grammar, check_selector
from monitor.reader import Reader

DEFAULT_MAX_BYTES = 20_000_000
EXPLAIN_LIMIT = 20

log = structlog.get_logger("monitor.cli")

DESCRIPTION = """\
Read the ticker of one page (a URL, a file, or - for stdin) and print its quotes as the page
wrote them. Without options it reads items such as "KGS/USD = 0.01144 0%", "KGS/USD: 0.01144
(0%)" or "USD/UZS 12,850.50 +0.12%" in lists, runs on one line, table rows and dt/dd pairs;
--pattern reads a site's own format, --json-query a JSON feed. --explain shows what was looked
at and why it was (not) read. See docs/parser.md.
"""


def register(sub: Subparsers) -> None:
    check = sub.add_parser(
        "check",
        help="read the ticker of one page or JSON feed and print its quotes",
        description=DESCRIPTION,
    )
    check.add_argument("source", metavar="SOURCE", help="http(s):// URL, file path, or - for stdin")
    check.add_argument("--selector", metavar="CSS", help="only read the elements this selects")
    check.add_argument(
        "--pattern",
        metavar="REGEX",
        help="a site's item format: a regular expression with named groups rate, base and "
        "quote (or pair), optionally change_pct; searched in every block",
    )
    check.add_argument("--quote-currency", metavar="CUR", help="quote currency the page implies")
    check.add_argument(
        "--decimal-separator",
        choices=[".", ","],
        default=".",
        help="decimal separator (the other one, or a space, may group thousands)",
    )
    check.add_argument(
        "--json-query",
        metavar="EXPR",
        help="read the source as JSON: a JMESPath expression yielding objects with pair (or "
        "base and quote), rate and optionally change_pct, e.g. "
        "'data.rates[*].{pair: symbol, rate: price}'",
    )
    check.add_argument(
        "--charset",
        metavar="LABEL",
        help="the encoding (e.g. windows-1251), instead of the one the server's Content-Type "
        "declares: for a saved file, or a server that declares none or the wrong one",
    )
    check.add_argument(
        "--explain",
        action="store_true",
        help="first list the blocks that could hold a quote (the JSON elements), what each "
        "read as, and why the others were not read",
    )
    check.add_argument(
        "--explain-limit",
        type=int,
        default=EXPLAIN_LIMIT,
        metavar="N",
        help=f"how many blocks --explain lists (default {EXPLAIN_LIMIT})",
    )
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.add_argument("--timeout", type=float, default=30.0, help="fetch deadline in seconds")
    check.add_argument(
        "--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="refuse larger pages"
    )
    check.set_defaults(func=run)


def _reader(args: argparse.Namespace) -> Reader:
    """How the options say to read the source; a usage error (exit 2) if they are invalid."""
    try:
        grammar = Grammar.from_config(
            pattern=args.pattern,
            quote_currency=args.quote_currency,
            decimal_separator=args.decimal_separator,
        )
    except ValueError as exc:  # "pattern: ..." names the setting: name the option instead
        key, _, reason = str(exc).partition(": ")
        fail(EXIT_USAGE, f"--{key.replace('_', '-')}: {reason}")
    if args.selector is not None:
        try:
            check_selector(args.selector)
        except ValueError as exc:
            fail(EXIT_USAGE, f"--selector: {exc}")
    query = None
    if args.json_query is not None:
        if args.selector is not None or args.pattern is not None:
            fail(EXIT_USAGE, "--json-query reads JSON: --selector and --pattern do not apply")
        try:
            query = compile_query(args.json_query)
        except ValueError as exc:
            fail(EXIT_USAGE, f"--json-query: {exc}")
    if args.charset is not None and codec_for(args.charset) is None:
        fail(EXIT_USAGE, f"--charset: {args.charset!r} is not an encoding label a browser knows")
    if args.max_bytes < 1 or args.timeout <= 0 or args.explain_limit < 0:
        fail(EXIT_USAGE, "--max-bytes and --timeout must be positive, --explain-limit not negative")
    return Reader(args.selector, grammar, query, args.charset)


def _quote_json(quote: Quote) -> dict[str, Any]:
    """A quote's JSON, always with the page's texts (``rate_text``, ``change_text``) too."""
    values = {k: v for k, v in quote.to_json().items() if k not in ("rate_text", "change_text")}
    return {**values, "rate_text": quote.rate_as_written, "change_text": quote.change_as_written}


def _table(snapshot: Snapshot) -> str:
    rows = [("PAIR", "RATE", "CHANGE")]
    for q in snapshot.quotes:
        change = q.change_as_written
        rows.append((q.pair, q.rate_as_written, "" if change is None else f"{change}%"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [
        f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}".rstrip() for r in rows
    ]
    if snapshot.page_date:
        lines.append(f"page date: {snapshot.page_date.isoformat()}")
    return "\n".join(lines)


def _explanation_text(explanation: Explanation) -> str:
    total, shown = explanation.total, len(explanation.candidates)
    if explanation.kind == "JSON":
        what = "element(s) in what the query yields"
    else:
        what = "block(s) that could hold a quote"
    lines = [
        f"explain: {explanation.kind}; {total} {what}"
        + (f", the first {shown} shown:" if shown < total else ":")
    ]
    width = max((len(c.verdict) for c in explanation.candidates), default=0)
    for n, c in enumerate(explanation.candidates, start=1):
        times = f"x{c.count}" if c.count > 1 else ""
        lines.append(f"{n:4}. {c.verdict:<{width}}  {times:>4}  {c.text}")
        lines.append(f"      {'':<{width}}        {c.detail}")
    if explanation.others:
        examples = "; ".join(repr(e) for e in explanation.examples)
        lines.append(
            f"and {explanation.others} block(s) with a digit but no BASE/QUOTE pair, not tried "
            f"({examples}{'; ...' if explanation.others > len(explanation.examples) else ''}): "
            "a site that writes its quotes without one needs --pattern"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    reader = _reader(args)
    body, content_type, label = read_source(args.source, args.timeout, args.max_bytes)
    explained: Explanation | None = None
    if args.explain:
        try:
            explained = reader.explain(body, content_type, limit=args.explain_limit)
        except ParseError:
            explained = None  # the same error comes again from reading, below
    try:
        result = reader.read(body, content_type)
    except ParseError as exc:
        _print_explanation(explained, args, label, error=str(exc))
        reason = str(exc)
        if reason.startswith("no ticker found"):
            fail(EXIT_NO_TICKER, f"{label}: {reason}")
        fail(EXIT_NO_TICKER, f"no ticker read from {label}: {reason}")
    snapshot = result.snapshot
    for warning in result.warnings:
        log.warning("ticker_partly_read", detail=warning)
    if snapshot.conflicts:
        log.warning("ticker_repeats_disagree", pairs=list(snapshot.conflicts), kept="first block")
    if args.json:
        out: dict[str, Any] = {
            "source": label,
            "page_date": snapshot.page_date.isoformat() if snapshot.page_date else None,
            "quotes": [_quote_json(q) for q in snapshot.quotes],
        }
        if explained is not None:
            out["explain"] = _explanation_json(explained)
        print(json.dumps(out, ensure_ascii=False))
    else:
        if explained is not None:
            print(_explanation_text(explained), end="\n\n")
        print(_table(snapshot))
    return EXIT_OK


def _explanation_json(explanation: Explanation) -> dict[str, Any]:
    return {
        "kind": explanation.kind,
        "total": explanation.total,
        "blocks": [c.to_json() for c in explanation.candidates],
        "others": explanation.others,
    }


def _print_explanation(
    explained: Explanation | None, args: argparse.Namespace, label: str, *, error: str
) -> None:
    """On a failure, the explanation (if asked for) still goes to stdout, before the error."""
    if explained is None:
        return
    if args.json:
        out = {"source": label, "error": error, "explain": _explanation_json(explained)}
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(_explanation_text(explained))
