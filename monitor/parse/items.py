"""What a ticker item looks like: the default item grammar, runs of items, per-site patterns.

A *block* is one candidate piece of text: a line of a text page, a block element of HTML, a table
row with its cells joined, a ``dt`` with its ``dd``. :func:`read_block` turns one into the quotes it
holds, or none.

The default grammar: a block is read only when it is made of items and separators alone, so that
prose never passes for a ticker::

    block     = [gap] item (gap? item)* [gap]
    item      = BASE "/" QUOTE link RATE [change]
    link      = "=" | ":" | " " | nothing (after a letter, before a digit: minified markup)
    change    = [sign] PCT "%" | "(" [sign] PCT "%" ")"
    gap       = " " | one or more of  | ¦ • · ∙ ● ▪ ‣ ◦ / ; * - – — ◆ ◇ ♦ ★ ☆ ✦ ► ▸ ▶ › »
                (each with optional spaces around it)

``BASE`` and ``QUOTE`` are codes of 2-10 capitals or digits with at least one letter; spaces are
allowed around ``/``, ``=`` and ``:``. ``RATE`` is ASCII digits with an optional fraction after the
target's ``decimal_separator`` and, when unambiguous for it, thousands groups: with ``.``, ``,`` or a
space groups them (``12,850.50``, ``12 850.50``); with ``,``, ``.`` or a space (``12.850,50``,
``12 850,50``). A grouped number starts with 1-9 and its groups have three digits, so ``0,5`` or
``1,23`` never read as thousands. ``PCT`` is a plain number (no groups); ``sign`` is ``+``, ``-``,
``−`` (U+2212) or ``–``. A bare trailing number is not a change.

A per-site :class:`Grammar` pattern is *searched* in the block instead, repeatedly: every
non-overlapping match is an item, so one pattern reads every item of a run. When it reads some items
of a block but leaves text that looks like another item (a code followed by a number), that is a
warning: a pattern never drops pairs silently.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from monitor.models import Quote

__all__ = [
    "MAX_LINE",
    "Grammar",
    "diagnose",
    "leftover",
    "make_quote",
    "normalise",
    "read_block",
    "read_change",
    "read_number",
    "shown",
]

#: Blocks longer than this (after normalising) are never read.
MAX_LINE: Final = 8192


@dataclass(frozen=True, slots=True)
class Grammar:
    """How one site writes its quotes. The default (no ``pattern``) reads ``KGS/USD = 0.01144 0%``.

    ``pattern`` is a regular expression *searched* repeatedly in each normalised block (single
    spaces, ends stripped): each non-overlapping match is an item, so it reads every item of a
    run; anchored with ``^...$`` it demands the whole block. Its named groups: ``rate``
    (required); ``base`` and ``quote``, or ``pair`` (``USD/KGS``, ``USD-KGS``: split at the first
    run of other characters; a single code is the base); optional ``change_pct`` (``-0.14%``,
    ``(−0,14 %)``). ``quote_currency`` supplies the quote when the page implies it (24.kg writes
    ``USD 69.74``, meaning som per dollar). ``decimal_separator`` is ``"."`` or ``","``; the other
    one, or a space, may group thousands (``12,850.50``; ``12.850,50``, ``12 850,50``).
    """

    pattern: re.Pattern[str] | None = None
    quote_currency: str | None = None
    decimal_separator: str = "."

    @classmethod
    def from_config(
        cls,
        *,
        pattern: str | None = None,
        quote_currency: str | None = None,
        decimal_separator: str = ".",
    ) -> Grammar:
        """Build a grammar from target settings; raise ``ValueError`` with a clear reason."""
        if decimal_separator not in (".", ","):
            raise ValueError("decimal_separator: expected '.' or ','")
        compiled = None
        if pattern is not None:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern: invalid regular expression: {exc}") from None
            groups = set(compiled.groupindex)
            if "rate" not in groups:
                raise ValueError("pattern: needs a named group (?P<rate>...)")
            if "pair" not in groups and "base" not in groups:
                raise ValueError("pattern: needs a named group (?P<pair>...) or (?P<base>...)")
            if "pair" not in groups and "quote" not in groups and quote_currency is None:
                raise ValueError("pattern: needs (?P<quote>...) or the quote_currency setting")
        return cls(compiled, quote_currency, decimal_separator)


DEFAULT_GRAMMAR: Final = Grammar()

# --- normalising -----------------------------------------------------------------------------

_ZERO_WIDTH: Final = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")


def normalise(line: str) -> str:
    """Zero-width characters dropped, whitespace runs made one space, ends stripped."""
    if _ZERO_WIDTH.search(line) is not None:
        line = _ZERO_WIDTH.sub("", line)
    return " ".join(line.split())  # str.split() splits at any Unicode whitespace, NBSP included


# --- numbers ---------------------------------------------------------------------------------

_SIGN: Final = r"[+\-−–]"
_SIGNS: Final = "+-−–"
_MINUS: Final = frozenset("-−–")
#: What may group thousands, per decimal separator.
_THOUSANDS: Final = {".": ", ", ",": ". "}


def _number_src(sep: str) -> str:
    """A rate: plain (``0.01144``) or grouped in thousands (``12,850.50``), ASCII digits only."""
    fraction = rf"(?:{re.escape(sep)}[0-9]{{1,40}})?"
    group = "[" + re.escape(_THOUSANDS[sep]) + "]"
    return rf"(?:[1-9][0-9]{{0,2}}(?:{group}[0-9]{{3}}){{1,13}}{fraction}|[0-9]{{1,40}}{fraction})"


def _plain_src(sep: str) -> str:
    return rf"[0-9]{{1,40}}(?:{re.escape(sep)}[0-9]{{1,40}})?"


# numbers are ASCII digits: "٣" would read as 3, which is not "as written"
_NUMBER: Final = {sep: re.compile(_number_src(sep)) for sep in ".,"}


def _decimal(text: str, sep: str) -> Decimal:
    """A number the grammar matched (``12 850,50``) as its exact Decimal."""
    for char in _THOUSANDS[sep]:
        text = text.replace(char, "")
    return Decimal(text.replace(sep, "."))


def read_number(raw: str, sep: str) -> Decimal | None:
    """``raw`` as written (``sep`` the decimal separator, thousands groups allowed); else None."""
    text = raw.strip()
    if _NUMBER[sep].fullmatch(text) is None:
        return None
    return _decimal(text, sep)


def read_change(raw: str, sep: str) -> tuple[Decimal, str] | None:
    """``-0.14%``, ``(+1,5 %)``, ``−0`` as a Decimal that keeps its sign, and its text as written
    (sign and number, without parentheses, spaces or ``%``: ``+1,5``); None if unreadable.
    """
    text = raw.strip().removeprefix("(").removesuffix(")").strip().removesuffix("%").strip()
    sign = text[:1] if text[:1] in _SIGNS else ""
    digits = text[len(sign) :].strip()
    value = read_number(digits, sep)
    if value is None:
        return None
    return (value.copy_negate() if sign in _MINUS else value), sign + digits


# --- quotes ----------------------------------------------------------------------------------

_CODE: Final = r"[A-Z0-9]{2,10}"
_CODE_RE: Final = re.compile(_CODE)


def make_quote(
    base: str,
    quote: str,
    rate: Decimal,
    change: Decimal | None,
    *,
    rate_text: str = "",
    change_text: str = "",
) -> Quote | None:
    """The quote of two codes (made upper case) and its values; None unless both are codes."""
    base, quote = base.upper(), quote.upper()
    if not (_CODE_RE.fullmatch(base) and _CODE_RE.fullmatch(quote)):
        return None
    if base.isdigit() or quote.isdigit():  # a code has a letter
        return None
    # the codes recur on every page and in every snapshot kept (5,000 targets): one string each
    # (interned strings are freed with their last reference)
    base, quote = sys.intern(base), sys.intern(quote)
    return Quote(
        pair=sys.intern(f"{base}/{quote}"),
        base=base,
        quote=quote,
        rate=rate,
        change_pct=change,
        rate_text=rate_text,
        change_text=change_text,
    )


_PAIR_SPLIT: Final = re.compile(r"[^A-Za-z0-9]+")


def split_pair(pair: str) -> tuple[str | None, str | None]:
    """``USD/KGS``, ``usd-kgs``, ``USD_KGS`` -> (``USD``, ``KGS``); a single code -> (code, None)."""
    parts = [p for p in _PAIR_SPLIT.split(pair) if p]
    if len(parts) == 2:
        return parts[0], parts[1]
    if len(parts) == 1:
        return parts[0], None
    return None, None


# --- the default grammar ---------------------------------------------------------------------

#: Characters that separate the items of a run (and may lead a block, as bullets do).
_GAP_CHARS: Final = "|¦•·∙●▪‣◦/;*-–—◆◇♦★☆✦►▸▶›»"
_GAP_CLASS: Final = "[" + re.escape(_GAP_CHARS) + "]"
_GAP: Final = re.compile(rf"(?: ?{_GAP_CLASS} ?)+| ")


def _item_src(sep: str) -> str:
    plain = _plain_src(sep)
    return (
        rf"(?P<base>{_CODE}) ?/ ?(?P<quote>{_CODE})"
        r"(?: ?[=:] ?| |(?<=[A-Z])(?=[0-9]))"
        rf"(?P<rate>{_number_src(sep)})"
        rf"(?: ?\( ?(?P<psign>{_SIGN})? ?(?P<ppct>{plain}) ?% ?\)"
        rf"|(?: |(?={_SIGN}))(?P<sign>{_SIGN})? ?(?P<pct>{plain}) ?%)?"
    )


#: One item at a position; it must end where a gap, the block's end or the next item starts.
_ITEM: Final = {
    sep: re.compile(_item_src(sep) + rf"(?=$|[ {re.escape(_GAP_CHARS)}]|{_CODE} ?/)")
    for sep in ".,"
}
#: An item anywhere, however it ends (for explanations).
_ITEM_ANYWHERE: Final = {sep: re.compile(_item_src(sep)) for sep in ".,"}
_LETTERED: Final = rf"(?=[0-9]{{0,9}}[A-Z]){_CODE}"
_PAIR: Final = re.compile(rf"\b{_LETTERED} ?/ ?{_LETTERED}\b")


def _run(line: str, sep: str) -> tuple[list[re.Match[str]], int]:
    """The items of a block read as a run, and where reading stopped (-1: it read it all)."""
    item = _ITEM[sep]
    end = len(line)
    gap = _GAP.match(line)
    pos = 0 if gap is None else gap.end()
    found: list[re.Match[str]] = []
    while pos < end:
        match = item.match(line, pos)
        if match is None:
            return found, pos
        found.append(match)
        pos = match.end()
        gap = _GAP.match(line, pos)
        if gap is not None:
            pos = gap.end()
    return found, (-1 if found else 0)


def _default_quote(match: re.Match[str], sep: str) -> Quote | None:
    rate_text = match["rate"]
    pct = match["pct"] or match["ppct"]
    sign = match["sign"] or match["psign"] or ""
    change = None
    change_text = ""
    if pct is not None:
        change = Decimal(pct.replace(sep, "."))
        if sign in _MINUS:
            change = change.copy_negate()
        change_text = sign + pct
    return make_quote(
        match["base"],
        match["quote"],
        _decimal(rate_text, sep),
        change,
        rate_text=rate_text,
        change_text=change_text,
    )


def _default_block(line: str, sep: str) -> tuple[Quote, ...]:
    found, stopped = _run(line, sep)
    if stopped >= 0:
        return ()
    quotes = tuple(q for q in (_default_quote(m, sep) for m in found) if q is not None)
    return quotes if len(quotes) == len(found) else ()


# --- per-site patterns -----------------------------------------------------------------------


def custom_quote(groups: Mapping[str, str | None], grammar: Grammar) -> Quote | None:
    """The quote of one match of a pattern (its named groups); None if unreadable."""
    rate_raw = groups.get("rate")
    if rate_raw is None:
        return None
    rate = read_number(rate_raw, grammar.decimal_separator)
    if rate is None:
        return None
    base, quote = groups.get("base"), groups.get("quote")
    pair = groups.get("pair")
    if pair:
        first, second = split_pair(pair)
        base, quote = base or first, quote or second
    quote = quote or grammar.quote_currency
    if not base or not quote:
        return None
    change = None
    change_text = ""
    raw_change = groups.get("change_pct")
    if raw_change:
        read = read_change(raw_change, grammar.decimal_separator)
        if read is not None:
            change, change_text = read
    return make_quote(
        base, quote, rate, change, rate_text=rate_raw.strip(), change_text=change_text
    )


def _custom_block(line: str, grammar: Grammar, pattern: re.Pattern[str]) -> tuple[Quote, ...]:
    quotes = (custom_quote(m.groupdict(), grammar) for m in pattern.finditer(line))
    return tuple(q for q in quotes if q is not None)


#: Text left outside a pattern's matches that looks like one more item: a code, then a number.
_ITEM_LIKE: Final = re.compile(r"\b[A-Z][A-Z0-9]{1,9}\b[^0-9A-Za-z]{0,5}[0-9]")


def leftover(line: str, pattern: re.Pattern[str]) -> str | None:
    """What a pattern left unread in a block it read items from, when it looks like an item."""
    line = normalise(line)
    rest: list[str] = []
    pos = 0
    for match in pattern.finditer(line):
        rest.append(line[pos : match.start()])
        pos = match.end()
    if not rest:
        return None
    text = normalise(" ".join([*rest, line[pos:]]))
    found = _ITEM_LIKE.search(text)
    return None if found is None else text[found.start() : found.start() + 40]


# --- a block ---------------------------------------------------------------------------------


def read_block(line: str, grammar: Grammar) -> tuple[Quote, ...]:
    """The quotes that a block holds: all of it (default grammar) or the pattern's matches."""
    if len(line) > 4 * MAX_LINE:
        return ()
    if grammar.pattern is None:
        if "/" not in line:
            return ()
        line = normalise(line)
        return _default_block(line, grammar.decimal_separator) if len(line) <= MAX_LINE else ()
    line = normalise(line)
    if len(line) > MAX_LINE:
        return ()
    return _custom_block(line, grammar, grammar.pattern)


def shown(text: str, width: int = 40) -> str:
    """``text`` for a human: normalised, unprintable characters (a page's escape sequences) as
    U+FFFD, cut to ``width`` characters."""
    text = "".join(c if c.isprintable() else "\ufffd" for c in normalise(text))
    return text if len(text) <= width else text[: width - 1] + "…"


def diagnose(line: str, grammar: Grammar) -> tuple[str, str]:
    """Why a block is read or not: a verdict (``quote``, ``no pair``, ``no rate``, ``prose``,
    ``pattern mismatch``, ``too long``) and a detail sentence, for ``check --explain``.
    """
    text = normalise(line)
    if len(text) > MAX_LINE or len(line) > 4 * MAX_LINE:
        return "too long", f"longer than {MAX_LINE} characters"
    quotes = read_block(line, grammar)
    if quotes:
        return "quote", "read " + ", ".join(q.pair for q in quotes)
    if grammar.pattern is not None:
        match = grammar.pattern.search(text)
        if match is None:
            return "pattern mismatch", "the pattern does not match"
        return "pattern mismatch", (
            f"the pattern matched {shown(match.group(0))!r}, but not a readable rate and pair"
        )
    return _why_not_items(text, grammar.decimal_separator)


def _why_not_items(text: str, sep: str) -> tuple[str, str]:
    """Why the default grammar reads no items in a normalised block."""
    found, stopped = _run(text, sep)
    if found:
        return "prose", f"items, then other text: {shown(text[stopped:])!r}"
    anywhere = _ITEM_ANYWHERE[sep].search(text)
    if anywhere is not None:
        before, after = text[: anywhere.start()], text[anywhere.end() :]
        other = before if before.strip() else after
        return "prose", f"an item with other text around it: {shown(other)!r}"
    pair = _PAIR.search(text)
    if pair is None:
        return "no pair", "no BASE/QUOTE pair of codes"
    return "no rate", f"{pair.group(0)}, but no rate after it: {shown(text[pair.end() :])!r}"
