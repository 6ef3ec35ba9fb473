"""JSON sources: a feed's quotes picked by a JMESPath query, its numbers read exactly as written.

A target with ``json_query`` (``check --json-query``) reads its response as JSON, whatever its
``Content-Type``: the query (a `JMESPath <https://jmespath.org>`_ expression) must yield a list
of objects, each with ``pair`` (``"KGS/USD"``, ``"kgs-usd"``; a single code takes the target's
``quote_currency``) or ``base`` and ``quote``, a ``rate`` and optionally a ``change_pct``::

    data.rates[*].{pair: symbol, rate: price, change_pct: pct}
    quotes[?market=='official'].{base: from, quote: to, rate: value}

A number is read exactly as the JSON text writes it (``0.09650`` keeps its zero; it never passes
through ``float``) and keeps that text for display; a numeric string (``"12,850.50"``,
``"+0.12%"``) is read as a page's number is, with the target's ``decimal_separator``. JMESPath's
functions work on these exact numbers (``sort_by``, ``max_by``, ``abs``, ``to_number`` ...).

A query that yields nothing (``null``, ``[]``) is a parse failure; elements that are not quotes
(no rate, a negative one, ``null`` while a market is closed) are left out with a warning, and when
none is a quote that is a parse failure too. An expression that is not JMESPath, or that calls an
unknown function, is refused when the query is compiled (a configuration error).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import jmespath
import jmespath.exceptions
import jmespath.functions
import jmespath.parser
import jmespath.visitor

from monitor.charset import decode
from monitor.errors import ParseError
from monitor.models import Quote, Snapshot
from monitor.parse import Candidate, Explanation, Grammar, ParseResult
from monitor.parse.assemble import MAX_WARNINGS, dedup
from monitor.parse.items import (
    DEFAULT_GRAMMAR,
    make_quote,
    read_change,
    read_number,
    shown,
    split_pair,
)

__all__ = ["FeedQuery", "compile_query", "explain_feed", "is_json", "read_feed"]


class JsonNumber(Decimal):
    """A JSON number: its exact value, and its text as the document wrote it (``1e-5``)."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> JsonNumber:
        number = super().__new__(cls, text)
        number.text = text
        return number


_NUMBER_TYPES: Final = ("JsonNumber", "Decimal")


class _Functions(jmespath.functions.Functions):
    """JMESPath's functions, taking exact numbers (``JsonNumber``, ``Decimal``) as numbers."""

    # jmespath's stubs leave out its private helpers, which are what this class extends
    def _get_allowed_pytypes(self, types: Any) -> Any:
        allowed, subtypes = super()._get_allowed_pytypes(types)  # type: ignore[misc]
        if "float" in allowed:
            allowed = [*allowed, *_NUMBER_TYPES]
        subtypes = [(*s, *_NUMBER_TYPES) if "float" in s else s for s in subtypes]
        return allowed, subtypes

    def _convert_to_jmespath_type(self, pyobject: Any) -> Any:
        if pyobject in _NUMBER_TYPES:
            return "number"
        return super()._convert_to_jmespath_type(pyobject)  # type: ignore[misc]

    @jmespath.functions.signature({"types": []})
    def _func_to_number(self, arg: Any) -> Any:
        if isinstance(arg, Decimal):
            return arg
        if isinstance(arg, str):
            try:
                number = JsonNumber(arg.strip())
            except ArithmeticError:  # decimal.InvalidOperation
                return None
            return number if number.is_finite() else None
        return super()._func_to_number(arg)  # type: ignore[misc]

    @jmespath.functions.signature({"types": []})
    def _func_to_string(self, arg: Any) -> Any:
        if isinstance(arg, Decimal):
            return _shown(arg)
        return super()._func_to_string(arg)  # type: ignore[misc]


_OPTIONS: Final = jmespath.Options(custom_functions=_Functions())


@dataclass(frozen=True, slots=True)
class FeedQuery:
    """A compiled ``json_query`` and the expression it was compiled from."""

    expression: str
    compiled: jmespath.parser.ParsedResult

    def search(self, document: object) -> object:
        try:
            return self.compiled.search(document, options=_OPTIONS)
        except jmespath.exceptions.JMESPathError as exc:
            raise ParseError(f"json_query failed: {_one_line(exc)}") from None
        # jmespath lets Python's own errors through: comparing a string with a number, say
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise ParseError(f"json_query failed: {_one_line(exc)}") from None


def compile_query(expression: str) -> FeedQuery:
    """Compile a JMESPath expression; ``ValueError`` names what is wrong with it."""
    if not expression.strip():
        raise ValueError("empty JMESPath expression")
    try:
        compiled = jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as exc:
        reason = _one_line(exc).removeprefix("Invalid jmespath expression: ")
        raise ValueError(f"invalid JMESPath expression: {reason}") from None
    for name in _functions(compiled.parsed):
        if name not in _Functions.FUNCTION_TABLE:
            raise ValueError(f"unknown JMESPath function {name}()")
    return FeedQuery(expression, compiled)


def _functions(node: Mapping[str, Any]) -> Iterator[str]:
    """The names of the functions an expression's syntax tree calls."""
    stack = [node]
    while stack:
        current = stack.pop()
        if current.get("type") == "function_expression":
            yield str(current.get("value"))
        stack.extend(child for child in current.get("children", ()) if isinstance(child, Mapping))


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


_JSON_TYPES: Final = ("application/json", "text/json")


def is_json(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` says JSON (``application/json``, ``application/*+json``)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media in _JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _document(body: bytes | str, charset: str | None) -> object:
    """The JSON document of ``body``, its numbers as :class:`JsonNumber`."""
    text = body if isinstance(body, str) else decode(body, charset, html=False)
    try:
        return json.loads(
            text,
            parse_float=JsonNumber,
            parse_int=JsonNumber,
            parse_constant=_refuse_constant,
        )
    except json.JSONDecodeError as exc:
        raise ParseError(f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:
        raise ParseError(f"not JSON: {exc}") from None
    except RecursionError:
        raise ParseError("not JSON that can be read: nested too deeply") from None


def _elements(result: object) -> list[object]:
    if result is None or result == []:
        raise ParseError("json_query matched nothing")
    if isinstance(result, dict):
        return [result]
    if isinstance(result, list):
        return result
    raise ParseError(f"json_query yields {_kind(result)}, not a list of objects")


_KINDS: Final = (
    (bool, "a boolean"),
    (Decimal, "a number"),
    (int, "a number"),
    (float, "a number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "an object"),
    (type(None), "null"),
)


def _kind(value: object) -> str:
    """What a JSON value is, in words: ``a string``, ``null`` ..."""
    for cls, name in _KINDS:
        if isinstance(value, cls):
            return name
    return type(value).__name__


def _exact(value: object, what: str) -> tuple[Decimal, str] | str:
    """A JSON number (or one JMESPath computed) as an exact Decimal and its text; else a reason."""
    if isinstance(value, JsonNumber):
        return Decimal(value), value.text
    if isinstance(value, Decimal):
        return value, ""
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value), ""
    if isinstance(value, float):
        return f"{what} is a float from the query (a literal or a function), not an exact number"
    return f"{what} is {_kind(value)}"


def _rate(value: object, grammar: Grammar) -> tuple[Decimal, str] | str:
    if isinstance(value, str):
        rate = read_number(value, grammar.decimal_separator)
        return f"rate {value!r} is not a number" if rate is None else (rate, value.strip())
    read = _exact(value, "rate")
    if isinstance(read, tuple) and (read[0].is_signed() and read[0] != 0):
        return f"rate {read[1] or read[0]} is negative"
    return read


def _change(value: object, grammar: Grammar) -> tuple[Decimal | None, str] | str:
    if value is None:
        return None, ""
    if isinstance(value, str):
        change = read_change(value, grammar.decimal_separator)
        return f"change_pct {value!r} is not a number" if change is None else change
    return _exact(value, "change_pct")


def _codes(element: Mapping[str, object], grammar: Grammar) -> tuple[str, str] | str:
    base, quote = element.get("base"), element.get("quote")
    pair = element.get("pair")
    if isinstance(pair, str):
        first, second = split_pair(pair)
        base = base if isinstance(base, str) else first
        quote = quote if isinstance(quote, str) else second
    elif pair is not None:
        return f"pair is {_kind(pair)}"
    if isinstance(base, str) and quote is None:
        quote = grammar.quote_currency
    if not isinstance(base, str) or not isinstance(quote, str) or not base or not quote:
        if isinstance(pair, str):
            return f"pair {pair!r} is not BASE/QUOTE (or set quote_currency)"
        return "no pair (or base and quote)"
    return base, quote


def _quote(element: object, grammar: Grammar) -> Quote | str:
    """The quote one element of the query's result is; else why not."""
    if not isinstance(element, dict):
        return f"{_kind(element)}, not an object"
    if element.get("rate") is None:
        return "no rate"
    codes = _codes(element, grammar)
    rate = _rate(element["rate"], grammar)
    change = _change(element.get("change_pct"), grammar)
    if isinstance(codes, str) or isinstance(rate, str) or isinstance(change, str):
        return next(p for p in (codes, rate, change) if isinstance(p, str))
    quote = make_quote(
        codes[0], codes[1], rate[0], change[0], rate_text=rate[1], change_text=change[1]
    )
    if quote is None:
        return f"{codes[0]}/{codes[1]} is not a pair of currency codes"
    return quote


def read_feed(
    body: bytes | str,
    query: FeedQuery,
    *,
    grammar: Grammar | None = None,
    charset: str | None = None,
) -> ParseResult:
    """The quotes of a JSON feed; ``ParseError`` when it is not JSON or holds none."""
    grammar = DEFAULT_GRAMMAR if grammar is None else grammar
    elements = _elements(query.search(_document(body, charset)))
    quotes: list[Quote] = []
    skipped: list[str] = []
    for n, element in enumerate(elements, start=1):
        read = _quote(element, grammar)
        if isinstance(read, str):
            skipped.append(f"element {n}: {read}")
        else:
            quotes.append(read)
    if not quotes:
        raise ParseError(
            f"no quote in what json_query yields ({len(elements)} element(s); "
            + "; ".join(skipped[:3])
            + ")"
        )
    unique, conflicts = dedup(quotes)
    warnings = [f"json_query: {reason}, left out" for reason in skipped[:MAX_WARNINGS]]
    if len(skipped) > MAX_WARNINGS:
        warnings.append(f"json_query: ... and {len(skipped) - MAX_WARNINGS} more left out")
    return ParseResult(Snapshot(quotes=unique, conflicts=conflicts), tuple(warnings))


# --- explanations ----------------------------------------------------------------------------

_SHOWN: Final = 120


def _shown(value: object) -> str:
    """``value`` as JSON text, numbers as the document wrote them."""
    if isinstance(value, JsonNumber):
        return value.text
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _cut(text: str) -> str:
    return shown(text, _SHOWN)


def _outline(document: object) -> str:
    if isinstance(document, dict):
        keys = ", ".join(shown(str(k), 30) for k in list(document)[:10])
        return f"the document is an object with keys: {keys}" if keys else "the document is {}"
    if isinstance(document, list):
        return f"the document is a list of {len(document)} element(s)"
    return f"the document is {_kind(document)}"


def explain_feed(
    body: bytes | str,
    query: FeedQuery,
    *,
    grammar: Grammar | None = None,
    charset: str | None = None,
    limit: int = 20,
) -> Explanation:
    """What the query yields, element by element, and why each is a quote or not."""
    grammar = DEFAULT_GRAMMAR if grammar is None else grammar
    document = _document(body, charset)
    result = query.search(document)
    if result is None or result == []:
        nothing = Candidate(
            _cut(f"{query.expression} -> {_shown(result)}"), 1, "no match", _outline(document)
        )
        return Explanation("JSON", (nothing,), 1)
    try:
        elements = _elements(result)
    except ParseError as exc:
        return Explanation("JSON", (Candidate(_cut(_shown(result)), 1, "no list", str(exc)),), 1)
    shown = []
    for element in elements[: max(0, limit)]:
        read = _quote(element, grammar)
        if isinstance(read, str):
            shown.append(Candidate(_cut(_shown(element)), 1, "skipped", read))
        else:
            detail = f"read {read.pair} {read.rate_as_written}"
            if read.change_as_written is not None:
                detail += f" {read.change_as_written}%"
            shown.append(Candidate(_cut(_shown(element)), 1, "quote", detail))
    return Explanation("JSON", tuple(shown), len(elements))
