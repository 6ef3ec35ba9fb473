"""Property tests of the ticker parser: generated tickers read back exactly; nothing else escapes.

Generated tickers vary the pairs, the rates (decimals of many exponents, trailing zeros kept), the
change (absent, ``+``, ``-``, unicode minus, ``0``/``-0``), the repeat count (1-10), the spaces
between tokens (NBSP, narrow NBSP, thin space, tabs), the bullets, and the wrapping (text lines,
``<li>``, nested ``<span>``, ``<div>`` per item, ``<br>``, a whole padded page). Further ones vary
the newer forms: runs of items on one line (spaces, ``|``, ``•``, ``·``, ``/``, ``;`` ... or
nothing between them), ``<marquee>``, table rows of cells, ``dt``/``dd`` pairs, ``=``, ``:`` or
nothing after the pair, changes in parentheses, a decimal comma, and thousands groups; and
sentences holding one item among other words, which must never read as a ticker.
"""

from __future__ import annotations

import html
import string
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, DecimalTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.errors import ParseError
from monitor.models import Snapshot
from monitor.parse import Grammar, parse
from tests.pages import MARQUEE_FORMS, QuoteSpec, marquee_html, page_html, ticker_html

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August")
MONTHS += ("September", "October", "November", "December")
SPACES = (" ", "  ", "\u00a0", "\u202f", "\u2009", "\t", " \u00a0 ")
BULLETS = ("", "• ", "· ", "* ", "- ", "•\u00a0")
SIGNS = ("", "+", "-", "−")
WRAPPINGS = ("text", "li", "spans", "divs", "br", "page")

COMMON = settings(
    deadline=None,  # the machine is shared and noisy; test_parse.py bounds the time instead
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


Read = tuple[str, DecimalTuple, DecimalTuple | None]


@dataclass(frozen=True)
class Generated:
    """A generated quote: how the page writes it, and what ``parse`` must read."""

    pair: str
    rate: str  # as written
    sign: str
    change: str | None  # magnitude as written, None: no change shown

    @property
    def spec(self) -> QuoteSpec:
        return (self.pair, self.rate, None if self.change is None else self.sign + self.change)

    @property
    def expected(self) -> Read:
        """Pair, rate and change as ``Decimal.as_tuple()``: sign, digits and exponent exactly."""
        rate = Decimal(self.rate).as_tuple()
        if self.change is None:
            return self.pair, rate, None
        negative = self.sign in ("-", "−")
        return self.pair, rate, Decimal(("-" if negative else "") + self.change).as_tuple()


codes = st.text(alphabet=string.ascii_uppercase, min_size=2, max_size=6) | st.builds(
    lambda a, b: a + b,
    st.text(alphabet=string.ascii_uppercase, min_size=1, max_size=5),
    st.text(alphabet=string.digits + string.ascii_uppercase, min_size=1, max_size=5),
)


@st.composite
def numbers(draw: st.DrawFn) -> str:
    """A non-negative decimal written positionally: ``0.01144``, ``0.09650``, ``2345``, ``0``."""
    digits = draw(st.integers(min_value=0, max_value=10**12))
    exponent = draw(st.integers(min_value=-10, max_value=3))
    text = format(Decimal(digits).scaleb(exponent), "f")
    assert Decimal(text) == Decimal(digits).scaleb(exponent)
    return text


@st.composite
def quotes(draw: st.DrawFn) -> Generated:
    base = draw(codes)
    quote = draw(codes.filter(lambda c: c != base))
    change = draw(st.none() | numbers())
    return Generated(f"{base}/{quote}", draw(numbers()), draw(st.sampled_from(SIGNS)), change)


tickers = st.lists(quotes(), min_size=1, max_size=6, unique_by=lambda q: q.pair)
dates = st.none() | st.dates(min_value=date(1990, 1, 1), max_value=date(2090, 12, 31))


def write_item(quote: Generated, space: str, bullet: str) -> str:
    change = "" if quote.change is None else f"{space}{quote.sign}{quote.change}%"
    return f"{bullet}{quote.pair}{space}={space}{quote.rate}{change}"


def span_item(quote: Generated, space: str) -> str:
    base, _, code = quote.pair.partition("/")
    sign = {"−": "&minus;", "-": "&#45;", "+": "+", "": ""}[quote.sign]
    change = "" if quote.change is None else f"{space}<span><i>{sign}{quote.change}</i>%</span>"
    return (
        f"<span><b>{base}</b>/<b>{code}</b></span>{space}={space}<span>{quote.rate}</span>{change}"
    )


def build(
    items: list[Generated],
    repeats: int,
    *,
    day: date | None,
    wrapping: str,
    space: str,
    bullet: str,
) -> str:
    """The page of a generated ticker in one of ``WRAPPINGS``."""
    sequence = [q for _ in range(repeats) for q in items]
    day_line = None if day is None else f"{day.day:02d} {MONTHS[day.month - 1]} {day.year}"
    if wrapping == "text":
        lines = [("  " if i else "") + write_item(q, space, bullet) for i, q in enumerate(sequence)]
        return "\n".join([*lines, *([day_line] if day_line else []), "Viewing results 1 - 6"])
    if wrapping == "page":
        specs = [q.spec for q in items]
        return ticker_html(specs, repeats, day_line, filler_kb=40, form="spans", seed=repeats)
    text = [html.escape(write_item(q, space, bullet)) for q in sequence]
    if wrapping == "li":
        body = "<ul>" + "".join(f"<li>{t}</li>" for t in text) + "</ul>"
    elif wrapping == "spans":
        body = "<ul>" + "".join(f"<li>{span_item(q, space)}</li>" for q in sequence) + "</ul>"
    elif wrapping == "divs":
        body = "".join(f"<div class=item>\n  {t}\n</div>" for t in text)
    else:
        body = "<div>" + "<br>".join(text) + "</div>"
    if day_line:
        body += f"<p>{day_line}</p>"
    return f"<html><body><header>Rates</header>{body}<p>More news</p></body></html>"


def read(snapshot: Snapshot) -> list[Read]:
    return [
        (q.pair, q.rate.as_tuple(), None if q.change_pct is None else q.change_pct.as_tuple())
        for q in snapshot.quotes
    ]


@settings(COMMON, max_examples=250)
@given(
    items=tickers,
    repeats=st.integers(min_value=1, max_value=10),
    day=dates,
    wrapping=st.sampled_from(WRAPPINGS),
    space=st.sampled_from(SPACES),
    bullet=st.sampled_from(BULLETS),
    as_bytes=st.booleans(),
)
def test_generated_tickers_read_back_exactly(
    *,
    items: list[Generated],
    repeats: int,
    day: date | None,
    wrapping: str,
    space: str,
    bullet: str,
    as_bytes: bool,
) -> None:
    page = build(items, repeats, day=day, wrapping=wrapping, space=space, bullet=bullet)
    snapshot = parse(page.encode("utf-8") if as_bytes else page)
    assert read(snapshot) == [q.expected for q in items]
    assert snapshot.page_date == day
    assert snapshot.conflicts == ()


@settings(COMMON, max_examples=60)
@given(
    items=tickers,
    repeats=st.integers(min_value=1, max_value=10),
    form=st.sampled_from(MARQUEE_FORMS),
)
def test_generated_tickers_with_a_selector(items: list[Generated], repeats: int, form: str) -> None:
    specs = [q.spec for q in items]
    page = page_html(
        '<div class="ticker">' + marquee_html(specs, repeats, form=form) + "</div>",
        filler_kb=20,
    )
    assert read(parse(page, selector=".ticker")) == [q.expected for q in items]
    with pytest.raises(ParseError):
        parse(page, selector=".absent")


@settings(COMMON, max_examples=300)
@given(st.text())
def test_arbitrary_text_parses_or_raises_parse_error(text: str) -> None:
    outcome(text)


@settings(COMMON, max_examples=300)
@given(st.binary())
def test_arbitrary_bytes_parse_or_raise_parse_error(blob: bytes) -> None:
    outcome(blob)


TOKENS = (
    *"<>/= \n\u00a0&;#%-−•.019KGSUD\x00",
    *("div", "li", "ul", "span", "br", "p", "script", "style", "!--", "-->", "nbsp", "minus"),
    *("<li>", "</li>", "<div>", "</div>", "KGS/USD", " = ", "0.01144", " -0%", "16 May 2025"),
    *("<![CDATA[", "<svg>", "<table>", "<td>", "<pre>", "<noscript>", "&#61;", "<!DOCTYPE html>"),
)
MARKUP = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)


@settings(COMMON, max_examples=300)
@given(
    page=MARKUP,
    selector=st.none()
    | st.sampled_from(["li", "div > li", ".x", "p:last-child", "[", "", "ul li:nth-child(2)"]),
)
def test_arbitrary_markup_parses_or_raises_parse_error(page: str, selector: str | None) -> None:
    outcome(page, selector=selector)
    outcome(page.encode("utf-8", "surrogatepass"), selector=selector)


@settings(COMMON, max_examples=100)
@given(
    page=MARKUP,
    pattern=st.sampled_from(
        [
            r"(?P<base>[A-Z]{3}) (?P<rate>\d+)",
            r"(?P<pair>\S+) = (?P<rate>\S+)(?: (?P<change_pct>\S+))?",
        ]
    ),
)
def test_arbitrary_markup_with_a_custom_grammar(page: str, pattern: str) -> None:
    outcome(page, grammar=Grammar.from_config(pattern=pattern, quote_currency="KGS"))


def outcome(
    page: str | bytes, *, selector: str | None = None, grammar: Grammar | None = None
) -> None:
    """``parse`` returns a snapshot of well-formed quotes, or raises ParseError; nothing else."""
    try:
        snapshot = parse(page, selector=selector, grammar=grammar)
    except ParseError:
        return
    assert isinstance(snapshot, Snapshot)
    assert snapshot.quotes
    pairs = [q.pair for q in snapshot.quotes]
    assert len(pairs) == len(set(pairs))
    for quote in snapshot.quotes:
        assert quote.pair == f"{quote.base}/{quote.quote}"
        assert isinstance(quote.rate, Decimal)
        assert quote.rate.is_finite()
        assert quote.rate >= 0
    assert set(snapshot.conflicts) <= set(pairs)


@settings(COMMON, max_examples=40)
@given(
    items=tickers,
    widget=st.none() | tickers,
    day=dates,
    filler_kb=st.integers(min_value=33, max_value=160),
    where=st.floats(min_value=0, max_value=1),
    form=st.sampled_from([f for f in MARQUEE_FORMS if f != "pre"]),
    widget_form=st.sampled_from(MARQUEE_FORMS),
)
def test_the_quick_path_agrees_with_reading_the_whole_page(
    *,
    items: list[Generated],
    widget: list[Generated] | None,
    day: date | None,
    filler_kb: int,
    where: float,
    form: str,
    widget_form: str,
) -> None:
    """Large pages are read up to just past their last item first; that must change nothing."""
    day_line = "" if day is None else f"<p>{day.day} {MONTHS[day.month - 1]} {day.year}</p>"
    ticker = '<div class="ticker">' + marquee_html([q.spec for q in items], 3, form=form) + "</div>"
    page = page_html(ticker + day_line, filler_kb=filler_kb)
    if widget is not None:  # a second ticker somewhere among the teasers
        cuts = [i for i in range(len(page)) if page.startswith("</article>", i)]
        at = cuts[int(where * (len(cuts) - 1))]
        block = marquee_html([q.spec for q in widget], 1, form=widget_form)
        page = page[:at] + block + page[at:]
    quick = parse(page)
    whole = parse(page, selector="body, .never-last")  # "last": a selector that sees it all
    assert quick == whole
    assert quick.conflicts == whole.conflicts
    assert quick.page_date == day
    if widget is None:
        assert read(quick) == [q.expected for q in items]


# --- runs, tables, definition lists, separators, thousands groups ---------------------------

#: What may group thousands as a page writes it (NBSP and narrow NBSP read as spaces).
GROUPS = {".": (",", " ", "\u00a0", "\u202f"), ",": (".", " ", "\u00a0")}
LINKS = (" = ", "=", ": ", ":", " ", " =\u00a0")
RUN_GAPS = (" ", " | ", "|", " • ", " · ", " / ", "; ", " — ", " ◆ ", " - ")
FORMS_NEW = ("text-run", "html-run", "minified", "marquee", "rows", "dl")


@dataclass(frozen=True)
class Written:
    """A generated quote as a page writes it (``rate``, ``change`` with sign), and what it is."""

    pair: str
    rate: str
    rate_value: Decimal
    change: str | None  # as written, with sign and without %, e.g. "+0,5"
    change_value: Decimal | None
    parens: bool

    def change_html(self) -> str:
        if self.change is None:
            return ""
        return f"({self.change}%)" if self.parens else f"{self.change}%"

    def text(self, link: str) -> str:
        change = self.change_html()
        return f"{self.pair}{link}{self.rate}" + (f" {change}" if change else "")

    @property
    def expected(self) -> tuple[str, DecimalTuple, DecimalTuple | None, str, str | None]:
        shown = " ".join(self.rate.split())  # the page's spaces read as one space
        change = None if self.change_value is None else self.change_value.as_tuple()
        return self.pair, self.rate_value.as_tuple(), change, shown, self.change


@st.composite
def written_numbers(draw: st.DrawFn, sep: str, *, grouped: bool) -> tuple[str, Decimal]:
    """A non-negative number as a page writes it with decimal separator ``sep``."""
    whole = draw(st.integers(min_value=0, max_value=10**10))
    fraction = draw(st.text(alphabet=string.digits, max_size=6))
    digits = str(whole)
    if grouped and whole >= 1000:
        group = draw(st.sampled_from(GROUPS[sep]))
        head = len(digits) % 3 or 3
        digits = group.join(
            [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
        )
    text = digits + (sep + fraction if fraction else "")
    return text, Decimal(f"{whole}.{fraction}" if fraction else str(whole))


@st.composite
def written_quotes(draw: st.DrawFn, sep: str) -> Written:
    base = draw(codes)
    quote = draw(codes.filter(lambda c: c != base))
    rate, rate_value = draw(written_numbers(sep, grouped=draw(st.booleans())))
    change = change_value = None
    if draw(st.booleans()):
        magnitude, value = draw(written_numbers(sep, grouped=False))
        sign = draw(st.sampled_from(SIGNS))
        change = sign + magnitude
        change_value = value.copy_negate() if sign in ("-", "−") else value
    return Written(f"{base}/{quote}", rate, rate_value, change, change_value, draw(st.booleans()))


@st.composite
def new_pages(draw: st.DrawFn) -> tuple[str, str, list[Written], date | None]:
    """A page in one of ``FORMS_NEW``; returns (page, decimal separator, quotes, date)."""
    sep = draw(st.sampled_from(".,"))
    items = draw(st.lists(written_quotes(sep), min_size=1, max_size=6, unique_by=lambda q: q.pair))
    form = draw(st.sampled_from(FORMS_NEW))
    link = draw(st.sampled_from(LINKS))
    gap = draw(st.sampled_from(RUN_GAPS))
    repeats = draw(st.integers(min_value=1, max_value=3))
    day = draw(dates)
    day_line = None if day is None else f"{day.day} {MONTHS[day.month - 1]} {day.year}"
    sequence = [q for _ in range(repeats) for q in items]
    if form == "text-run":
        run = gap.join(q.text(link) for q in items)
        lines = [run] * repeats + ([day_line] if day_line else []) + ["Viewing results 1 - 6"]
        return "\n".join(lines), sep, items, day
    if form in ("html-run", "minified", "marquee"):
        if form == "html-run":
            spans = [f"<span>{html.escape(q.text(link))}</span>" for q in items]
            body = "<div class=run>" + html.escape(gap).join(spans) + "</div>"
        elif form == "minified":
            body = (
                "<div class=run>"
                + "".join(f"<b>{html.escape(q.text(link))}</b>" for q in items)
                + "</div>"
            )
        else:
            body = "<marquee>" + html.escape(gap.join(q.text(link) for q in items)) + "</marquee>"
        body *= repeats
    elif form == "rows":
        rows = "".join(
            f"<tr><td>{q.pair}</td><td>{html.escape(q.rate)}</td><td>{html.escape(q.change_html())}</td></tr>"
            for q in sequence
        )
        body = f"<table><thead><tr><th>Pair</th><th>Rate</th><th>%</th></tr></thead>{rows}</table>"
    else:
        body = (
            "<dl>"
            + "".join(
                f"<dt>{q.pair}</dt><dd>{html.escape(q.rate)} <i>{html.escape(q.change_html())}</i></dd>"
                for q in sequence
            )
            + "</dl>"
        )
    if day_line:
        body += f"<p>{day_line}</p>"
    page = page_html(body, filler_kb=draw(st.sampled_from([0, 40])), comment_decoys=True)
    return page, sep, items, day


def read_written(
    snapshot: Snapshot,
) -> list[tuple[str, DecimalTuple, DecimalTuple | None, str, str | None]]:
    return [
        (
            q.pair,
            q.rate.as_tuple(),
            None if q.change_pct is None else q.change_pct.as_tuple(),
            q.rate_as_written,
            q.change_as_written,
        )
        for q in snapshot.quotes
    ]


@settings(COMMON, max_examples=300)
@given(generated=new_pages(), as_bytes=st.booleans())
def test_generated_runs_tables_and_lists_read_back_exactly(
    generated: tuple[str, str, list[Written], date | None], *, as_bytes: bool
) -> None:
    page, sep, items, day = generated
    grammar = Grammar.from_config(decimal_separator=sep)
    snapshot = parse(page.encode("utf-8") if as_bytes else page, grammar=grammar)
    assert read_written(snapshot) == [q.expected for q in items]
    assert snapshot.page_date == day
    assert snapshot.conflicts == ()


# --- prose never passes for a ticker ---------------------------------------------------------

WORDS = st.sampled_from(
    [
        "the", "rate", "was", "mentioned", "in", "report", "analysts", "said", "on", "Friday",
        "Central", "Bank", "KGS", "USD", "som", "rose", "by", "to", "12", "0.5", "3%", "2025",
        "(official)", "-", "—", "|", "•", ",", ".", ":", "and", "a", "per", "cent", "USD-KGS",
    ]
)  # fmt: skip


@settings(COMMON, max_examples=300)
@given(
    quote=quotes(),
    before=st.lists(WORDS, max_size=8),
    after=st.lists(WORDS, max_size=8),
    lowercase=st.sampled_from(["said", "was", "the rate", "analysts expect"]),
    where=st.booleans(),
    wrap=st.sampled_from(["text", "p", "b", "li", "marquee", "td"]),
    bullet=st.sampled_from(BULLETS),
)
def test_prose_with_one_embedded_quote_is_never_a_ticker(
    *,
    quote: Generated,
    before: list[str],
    after: list[str],
    lowercase: str,
    where: bool,
    wrap: str,
    bullet: str,
) -> None:
    """A sentence holding one item among words (at least one of them a lowercase word) is prose."""
    words = [*before, lowercase] if where else before
    tail = after if where else [lowercase, *after]
    item = write_item(quote, " ", bullet)
    sentence = " ".join([*words, item, *tail])
    if wrap == "text":
        page = sentence + "\n"
    elif wrap in ("b", "td"):
        parts = [html.escape(" ".join(words)), html.escape(item), html.escape(" ".join(tail))]
        if wrap == "b":
            page = "<p>{} <b>{}</b> {}</p>".format(*parts)
        else:
            page = "<table><tr>" + "".join(f"<td>{p}</td>" for p in parts) + "</tr></table>"
    else:
        page = f"<{wrap}>{html.escape(sentence)}</{wrap}>"
    with pytest.raises(ParseError):
        parse(page)
