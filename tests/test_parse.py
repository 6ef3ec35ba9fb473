"""The ticker parser: the corpus in text and HTML forms, the grammar, dedup, dates, bad input."""

from __future__ import annotations

import codecs
import json
import random
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from monitor.errors import ParseError
from monitor.models import Snapshot
from monitor.parse import MAX_DEPTH, MAX_LINE, Grammar, parse
from tests.pages import (
    FORMS,
    MARQUEE_FORMS,
    SEED_DATE,
    SEED_QUOTES,
    corpus_html,
    expected_json,
    marquee_html,
    page_html,
    ticker_html,
    ticker_text,
)

FIXTURES = Path(__file__).parent / "fixtures"
INDEX: list[dict[str, Any]] = json.loads((FIXTURES / "index.json").read_text(encoding="utf-8"))
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August")
MONTHS += ("September", "October", "November", "December")
#: The per-target grammar of 24.kg (fixture 078): ``USD 69.74`` a line, quote currency implied.
KG24 = Grammar.from_config(
    pattern=r"^(?P<base>[A-Z]{3})\s+(?P<rate>\d+(?:[.,]\d+)?)$", quote_currency="KGS"
)
SEED_JSON = expected_json(SEED_QUOTES)


VALUE_KEYS = ("pair", "base", "quote", "rate", "change_pct")


def quotes_json(snapshot: Snapshot) -> list[dict[str, str | None]]:
    """The values of each quote (their JSON without the page's texts, tested on their own)."""
    return [{k: quote.to_json()[k] for k in VALUE_KEYS} for quote in snapshot.quotes]


def date_line(day: date | None) -> str | None:
    return None if day is None else f"{day.day:02d} {MONTHS[day.month - 1]} {day.year}"


def text_of(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def grammar_for(entry: dict[str, Any]) -> Grammar | None:
    return KG24 if entry["site"] == "24.kg" else None


def check_entry(entry: dict[str, Any], page: str | bytes, **kwargs: Any) -> None:
    """``page`` reads exactly as index.json says for ``entry``."""
    grammar = grammar_for(entry)
    if not entry["expected"]:
        with pytest.raises(ParseError, match="no ticker found"):
            parse(page, grammar=grammar, **kwargs)
        return
    snapshot = parse(page, grammar=grammar, **kwargs)
    want = [{k: q[k] for k in VALUE_KEYS} for q in entry["expected"]]
    assert quotes_json(snapshot) == want
    assert date_line(snapshot.page_date) == entry["date_line"]
    assert snapshot.conflicts == ()


# --- the corpus ------------------------------------------------------------------------------

ENTRIES = [pytest.param(entry, id=entry["file"]) for entry in INDEX]


@pytest.mark.parametrize("entry", ENTRIES)
def test_corpus_text(entry: dict[str, Any]) -> None:
    check_entry(entry, text_of(entry["file"]))


@pytest.mark.parametrize("entry", ENTRIES)
def test_corpus_text_bytes(entry: dict[str, Any]) -> None:
    check_entry(entry, text_of(entry["file"]).encode("utf-8"))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("entry", ENTRIES)
def test_corpus_html(entry: dict[str, Any], form: str) -> None:
    page = corpus_html(text_of(entry["file"]), form)
    check_entry(entry, page)
    check_entry(entry, page.encode("utf-8"))


@pytest.mark.parametrize("entry", ENTRIES)
def test_corpus_html_with_selector(entry: dict[str, Any]) -> None:
    check_entry(entry, corpus_html(text_of(entry["file"]), "page"), selector=".content")


def test_corpus_index_is_complete() -> None:
    files = sorted(p.name for p in FIXTURES.glob("*.txt"))
    assert files == sorted(entry["file"] for entry in INDEX)
    assert {e["file"] for e in INDEX if not e["expected"]} == {"026.txt"}


def test_012_article_bullet_is_not_a_quote() -> None:
    text = text_of("012.txt")
    assert "  • Via Azerbaijan:" in text
    snapshot = parse(text)
    assert [q.pair for q in snapshot.quotes] == [
        "KGS/USD",
        "KZT/USD",
        "TJS/USD",
        "UZS/USD",
        "TMT/USD",
    ]


def test_078_needs_its_grammar() -> None:
    with pytest.raises(ParseError):
        parse(text_of("078.txt"))
    snapshot = parse(text_of("078.txt"), grammar=KG24)
    assert [(q.pair, q.rate, q.change_pct) for q in snapshot.quotes] == [
        ("USD/KGS", Decimal("69.74"), None),
        ("EUR/KGS", Decimal("79.24"), None),
        ("RUB/KGS", Decimal("1.05"), None),
    ]


# --- the seed page ---------------------------------------------------------------------------


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
@pytest.mark.parametrize("selector", [None, ".ticker", "div.marquee", "ul.ticker-list"])
def test_seed_page(selector: str | None, *, as_bytes: bool) -> None:
    page = ticker_html(SEED_QUOTES, 8, SEED_DATE, filler_kb=200)
    assert len(page) > 200_000
    snapshot = parse(page.encode() if as_bytes else page, selector=selector)
    assert quotes_json(snapshot) == SEED_JSON
    assert snapshot.page_date == date(2025, 5, 16)
    assert snapshot.conflicts == ()


def test_seed_text() -> None:
    snapshot = parse(ticker_text(SEED_QUOTES, 8, SEED_DATE))
    assert quotes_json(snapshot) == SEED_JSON
    assert str(snapshot.quotes[2].rate) == "0.09650"
    assert str(snapshot.quotes[1].change_pct) == "-0"
    assert snapshot.page_date == date(2025, 5, 16)


@pytest.mark.parametrize("form", MARQUEE_FORMS)
@pytest.mark.parametrize("filler_kb", [0, 120])
def test_marquee_forms(form: str, filler_kb: int) -> None:
    page = ticker_html(SEED_QUOTES, 8, SEED_DATE, filler_kb=filler_kb, form=form)
    snapshot = parse(page)
    assert quotes_json(snapshot) == SEED_JSON
    assert snapshot.page_date == date(2025, 5, 16)


def test_page_without_ticker() -> None:
    with pytest.raises(ParseError, match="no ticker found"):
        parse(page_html("<p>Nothing to see.</p>", filler_kb=100))


def test_decoys_alone_are_not_a_ticker() -> None:
    page = page_html("<p>The rates widget is down.</p>", filler_kb=60, decoys=True)
    assert "KGS/USD = 9.99999" in page
    with pytest.raises(ParseError):
        parse(page)


# --- the item grammar ------------------------------------------------------------------------


def one(line: str, grammar: Grammar | None = None) -> tuple[str, str, str | None]:
    """The single quote that a page of just ``line`` holds."""
    (quote,) = parse(line, grammar=grammar).quotes
    return quote.pair, str(quote.rate), None if quote.change_pct is None else str(quote.change_pct)


@pytest.mark.parametrize(
    ("line", "want"),
    [
        ("KGS/USD = 0.01144 0%", ("KGS/USD", "0.01144", "0")),
        ("• KGS/USD = 0.01144 0%", ("KGS/USD", "0.01144", "0")),
        ("  • KZT/USD = 0.00196 -0%", ("KZT/USD", "0.00196", "-0")),
        ("· TJS/USD = 0.09650 0%", ("TJS/USD", "0.09650", "0")),
        ("* TMT/USD = 0.28575 -0.14%", ("TMT/USD", "0.28575", "-0.14")),
        ("- TMT/USD = 0.28575 −0.14%", ("TMT/USD", "0.28575", "-0.14")),
        ("•KGS/USD=0.01144 +0.12%", ("KGS/USD", "0.01144", "0.12")),
        ("KGS/USD = 0.01144 −0%", ("KGS/USD", "0.01144", "-0")),
        ("KGS/USD = 0.01144 +0%", ("KGS/USD", "0.01144", "0")),
        ("KGS/USD = 0.01144", ("KGS/USD", "0.01144", None)),
        ("KGS/USD = 12", ("KGS/USD", "12", None)),
        ("KGS / USD = 0.01144 0.5 %", ("KGS/USD", "0.01144", "0.5")),
        ("TMT/USD = 0.28575-0.14%", ("TMT/USD", "0.28575", "-0.14")),
        ("KGS/USD\u00a0=\u00a00.01144\u00a0-0.14%", ("KGS/USD", "0.01144", "-0.14")),
        ("KGS/USD\u202f=\u20090.01144\t0%", ("KGS/USD", "0.01144", "0")),
        ("\u00a0\u00a0•\u00a0KGS/USD = 0.01144 0%\u00a0", ("KGS/USD", "0.01144", "0")),
        ("KGS/USD =\u200b 0.01144 0%", ("KGS/USD", "0.01144", "0")),
        ("USDT/BTC1 = 0.000016 1.5%", ("USDT/BTC1", "0.000016", "1.5")),
        ("XAU/USD = 2345.60 -1.20%", ("XAU/USD", "2345.60", "-1.20")),
        # no "=": a colon, or nothing at all; the change in parentheses
        ("KGS/USD 0.01144 0%", ("KGS/USD", "0.01144", "0")),
        ("KGS/USD: 0.01144 (0%)", ("KGS/USD", "0.01144", "0")),
        ("KGS/USD:0.01144(-0.14%)", ("KGS/USD", "0.01144", "-0.14")),
        ("KGS/USD = 0.01144 ( +0.5 % )", ("KGS/USD", "0.01144", "0.5")),
        ("KGS/USD 0.01144", ("KGS/USD", "0.01144", None)),
        # thousands groups that "." as the decimal separator leaves unambiguous
        ("USD/UZS 12,850.50 +0.12%", ("USD/UZS", "12850.50", "0.12")),
        ("USD/UZS 12 850.50 +0.12%", ("USD/UZS", "12850.50", "0.12")),
        ("USD/UZS\u202f12\u202f850.50", ("USD/UZS", "12850.50", None)),
        ("BTC/USD = 1,234,567 2%", ("BTC/USD", "1234567", "2")),
        ("KGS/USD = 1,234.5 0%", ("KGS/USD", "1234.5", "0")),
        ("USD/KGS 1 000 5%", ("USD/KGS", "1000", "5")),
        ("USD/KGS 1 234%", ("USD/KGS", "1", "234")),  # a change needs its %: 1, then 234%
        # pair and rate in elements with nothing between them (minified markup)
        ("KGS/USD0.01144 0%", ("KGS/USD", "0.01144", "0")),
    ],
)
def test_default_grammar_reads(line: str, want: tuple[str, str, str | None]) -> None:
    assert one(line) == want
    assert one(f"<ul><li>{line}</li></ul>") == want


@pytest.mark.parametrize(
    "line",
    [
        "kgs/usd = 0.01144 0%",  # lower case
        "K/USD = 0.01144 0%",  # one-letter code
        "KGSKGSKGSKG/USD = 0.01 0%",  # eleven letters
        "12/34 = 0.01 0%",  # no letter in the codes
        "KGS/USD = 0,01144 0%",  # the default decimal separator is "."
        "KGS/USD = 0,5 0%",  # not a thousands group either: three digits after the ","
        "KGS/USD = 1,23 0%",
        "KGS/USD = 0,001 0%",  # a thousands group never follows a leading zero
        "KGS/USD = 1,2345 0%",
        "KGS/USD = 12.850,50 0%",  # "," groups with ".", never the other way round
        "KGS/USD = .5 0%",
        "KGS/USD = 0.01144 0.5",  # a change without its "%"
        "KGS/USD = 0.01144 0% up",
        "KGS/USD = 0.01144 0% 12",
        "KGS/USD = 0.01144 (0%",
        "KGS/USD = 0.01144 0% KZT/USD",  # a second pair without a rate
        "KGS-USD = 0.01144 0%",
        "KGS/USD; 0.01144 0%",
        "KGS/USD = -0.01144 0%",
        "• Via Azerbaijan: new pipelines to Baku would be needed.",
        "the KGS/USD = 0.01 rate was mentioned in the report",
        "Rates: KGS/USD = 0.01144 0%",
        "Rates: KGS/USD = 0.01144 0% | KZT/USD = 0.00196 -0%",
        "KGS/USD = 0.01144 0% | KZT/USD = 0.00196 -0% as of today",
        "The KGS/USD pair traded at 0.01144 on Friday.",
        "KGS/USD 0.01144 rose 0.5% this week",
        "Updated 16/05/2025 12:00",
    ],
)
def test_default_grammar_refuses(line: str) -> None:
    with pytest.raises(ParseError):
        parse(line)
    with pytest.raises(ParseError):
        parse(f"<p>{line}</p>")


def test_prose_is_not_a_quote_but_a_whole_line_is() -> None:
    prose = "Analysts said the KGS/USD = 0.01 rate was mentioned twice.\n"
    with pytest.raises(ParseError):
        parse(prose)
    # the same words, but the item alone on its line (or in its own block), is a quote
    assert one(prose + "KGS/USD = 0.01\n") == ("KGS/USD", "0.01", None)
    assert one(f"<p>{prose}</p><p>KGS/USD = 0.01</p>") == ("KGS/USD", "0.01", None)
    # in HTML an inline element does not make a line: the sentence stays prose
    with pytest.raises(ParseError):
        parse("<p>Analysts said the <b>KGS/USD = 0.01</b> rate was mentioned.</p>")


def test_decimal_separator_comma_in_default_grammar() -> None:
    grammar = Grammar.from_config(decimal_separator=",")
    assert one("KGS/USD = 0,01144 −0,14%", grammar) == ("KGS/USD", "0.01144", "-0.14")
    with pytest.raises(ParseError):
        parse("KGS/USD = 0.01144 0%", grammar=grammar)


def test_custom_grammar_pair_and_change() -> None:
    grammar = Grammar.from_config(
        pattern=r"^(?P<pair>[A-Z]{3}[/-][A-Z]{3}):\s*(?P<rate>[\d.,]+)\s*\((?P<change_pct>[^)]*)\)$"
    )
    page = "EUR/USD: 1.0850 (+0.12%)\nUSD-JPY: 155.30 (−0.40 %)\nGBP/USD: 1.2701 (n/a)\n"
    snapshot = parse(page, grammar=grammar)
    assert [(q.pair, str(q.rate), str(q.change_pct)) for q in snapshot.quotes] == [
        ("EUR/USD", "1.0850", "0.12"),
        ("USD/JPY", "155.30", "-0.40"),
        ("GBP/USD", "1.2701", "None"),
    ]


def test_custom_grammar_decimal_comma_and_thousands() -> None:
    grammar = Grammar.from_config(
        pattern=r"(?P<base>[A-Z]{3})\s+(?P<rate>\d[\d. ]*(?:,\d+)?)\s*$",
        quote_currency="RUB",
        decimal_separator=",",
    )
    page = "Курс USD 89,50\nКурс EUR 97,13\nКурс XAU 7.012,50\nКурс BTC 5 612 300,1\n"
    snapshot = parse(page, grammar=grammar)
    assert [(q.pair, str(q.rate)) for q in snapshot.quotes] == [
        ("USD/RUB", "89.50"),
        ("EUR/RUB", "97.13"),
        ("XAU/RUB", "7012.50"),
        ("BTC/RUB", "5612300.1"),
    ]
    assert one("Курс USD 529,96", grammar)[1] == "529.96"


def test_custom_grammar_with_quote_group_and_search() -> None:
    grammar = Grammar.from_config(pattern=r"(?P<base>\w{3}) in (?P<quote>\w{3}): (?P<rate>\S+)")
    snapshot = parse("Today: usd in kgs: 87.45 (official)", grammar=grammar)
    assert [(q.pair, q.base, q.quote, str(q.rate)) for q in snapshot.quotes] == [
        ("USD/KGS", "USD", "KGS", "87.45")
    ]


def test_custom_grammar_that_matches_nothing() -> None:
    with pytest.raises(ParseError, match="pattern"):
        parse(ticker_text(SEED_QUOTES), grammar=KG24)
    with pytest.raises(ParseError, match="pattern"):
        parse(ticker_html(SEED_QUOTES), grammar=KG24)


def test_custom_grammar_in_html() -> None:
    page = page_html('<ul class="rates"><li>USD <b>69.74</b></li><li>EUR&nbsp;79.24</li></ul>')
    snapshot = parse(page, grammar=KG24)
    assert [(q.pair, str(q.rate)) for q in snapshot.quotes] == [
        ("USD/KGS", "69.74"),
        ("EUR/KGS", "79.24"),
    ]
    assert parse(page, grammar=KG24, selector="ul.rates").quotes == snapshot.quotes


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pattern": "("}, "invalid regular expression"),
        ({"pattern": r"(?P<base>\w+)"}, "rate"),
        ({"pattern": r"(?P<rate>\d+)"}, "pair"),
        ({"pattern": r"(?P<base>\w+) (?P<rate>\d+)"}, "quote_currency"),
        ({"decimal_separator": ";"}, "decimal_separator"),
    ],
)
def test_grammar_from_config_errors(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Grammar.from_config(**kwargs)


# --- repeats and conflicts -------------------------------------------------------------------


def test_repeats_collapse_in_order_of_first_appearance() -> None:
    quotes = [("BBB/USD", "2", "0"), ("AAA/USD", "1", "-0.5")]
    snapshot = parse(ticker_text(quotes, repeats=10))
    assert [q.pair for q in snapshot.quotes] == ["BBB/USD", "AAA/USD"]
    assert snapshot.conflicts == ()


def test_disagreeing_repeat_is_a_conflict_and_the_first_block_wins() -> None:
    first = [("KGS/USD", "0.01144", "0"), ("KZT/USD", "0.00196", "0")]
    later = [("KGS/USD", "0.01150", "0.5"), ("KZT/USD", "0.00196", "0")]
    page = ticker_text(first, 2) + ticker_text(later, 3) + ticker_text(first, 1)
    snapshot = parse(page)
    assert quotes_json(snapshot) == expected_json(first)
    assert snapshot.conflicts == ("KGS/USD",)


def test_conflicts_are_deduplicated_and_ordered() -> None:
    lines = [
        "AAA/USD = 1 0%",
        "BBB/USD = 2 0%",
        "AAA/USD = 1.5 0%",
        "BBB/USD = 2 1%",
        "AAA/USD = 1.7 0%",
        "BBB/USD = 2 2%",
    ]
    snapshot = parse("\n".join(lines))
    assert snapshot.conflicts == ("AAA/USD", "BBB/USD")
    assert [str(q.rate) for q in snapshot.quotes] == ["1", "2"]


def test_signed_zero_and_trailing_zeros_are_no_conflict() -> None:
    snapshot = parse("KGS/USD = 0.0965 0%\nKGS/USD = 0.09650 -0%\n")
    assert snapshot.conflicts == ()
    assert str(snapshot.quotes[0].rate) == "0.0965"
    assert str(snapshot.quotes[0].change_pct) == "0"


def test_first_complete_block_is_preferred_over_a_partial_one() -> None:
    # A, then B without C (an incomplete block), then a complete A B C block
    page = "AAA/USD = 9 0%\nAAA/USD = 1 0%\nBBB/USD = 2 0%\nCCC/USD = 3 0%\n"
    snapshot = parse(page)
    assert [(q.pair, str(q.rate)) for q in snapshot.quotes] == [
        ("AAA/USD", "1"),
        ("BBB/USD", "2"),
        ("CCC/USD", "3"),
    ]
    assert snapshot.conflicts == ("AAA/USD",)


def test_without_a_complete_block_the_first_quotes_win() -> None:
    snapshot = parse("AAA/USD = 1 0%\nBBB/USD = 2 0%\nAAA/USD = 3 0%\nCCC/USD = 4 0%\n")
    assert [(q.pair, str(q.rate)) for q in snapshot.quotes] == [
        ("AAA/USD", "1"),
        ("BBB/USD", "2"),
        ("CCC/USD", "4"),
    ]


def test_selector_leaves_out_a_second_ticker() -> None:
    other = [("KGS/USD", "0.5", "9"), ("EUR/USD", "1.1", "0")]
    page = page_html(
        '<div class="ticker">'
        + marquee_html(SEED_QUOTES, 3)
        + '</div><div class="date">16 May 2025</div>'
        + '<aside class="widget">'
        + marquee_html(other, 1, form="list")
        + "</aside>",
        filler_kb=80,
    )
    everything = parse(page)
    assert [q.pair for q in everything.quotes] == [q[0] for q in SEED_QUOTES] + ["EUR/USD"]
    assert everything.conflicts == ("KGS/USD",)
    scoped = parse(page, selector=".ticker")
    assert quotes_json(scoped) == SEED_JSON
    assert scoped.conflicts == ()
    assert scoped.page_date == date(2025, 5, 16)


# --- the date line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "want"),
    [
        ("16 May 2025", date(2025, 5, 16)),
        ("22 December 2025", date(2025, 12, 22)),
        ("08 November 2025", date(2025, 11, 8)),
        ("8 Sept 2024", date(2024, 9, 8)),
        ("Friday, 16 May 2025", date(2025, 5, 16)),
        ("May 16, 2025", date(2025, 5, 16)),
        ("2025-05-16", date(2025, 5, 16)),
        ("  16\u00a0May\u00a02025  ", date(2025, 5, 16)),
        ("31 February 2025", None),
        ("16 Mai 2025", None),
        ("16 May 2025, 10:45", None),
        ("Viewing results 1 - 6 of 12", None),
        ("0 May 2025", None),
    ],
)
def test_date_line(line: str, want: date | None) -> None:
    assert parse(ticker_text(SEED_QUOTES, 2) + line + "\n").page_date == want
    assert parse(f"<ul><li>KGS/USD = 1 0%</li></ul><div>{line}</div>").page_date == want


def test_date_line_after_a_blank_line_but_not_after_other_text() -> None:
    ticker = ticker_text(SEED_QUOTES, 2)
    assert parse(ticker + "\n\n16 May 2025\n").page_date == date(2025, 5, 16)
    assert parse(ticker + "\nViewing results 1 - 6 of 12\n16 May 2025\n").page_date is None
    assert parse("16 May 2025\n" + ticker).page_date is None
    # only the line after the first run counts
    assert parse(ticker + "Other text\n" + ticker + "16 May 2025\n").page_date is None


def test_date_line_outside_the_selected_elements() -> None:
    page = ticker_html(SEED_QUOTES, 8, "22 December 2025", filler_kb=50)
    assert parse(page, selector=".ticker").page_date == date(2025, 12, 22)
    assert parse(page, selector="li").page_date == date(2025, 12, 22)


def test_date_line_far_after_the_ticker() -> None:
    # a big inline SVG between the marquee and the date: the first cut of the page is too short
    svg = "<svg>" + '<path d="M0 0L1 1"/>' * 3000 + "</svg>"
    page = page_html(
        '<div class="ticker">' + marquee_html(SEED_QUOTES) + "</div>" + svg + "<p>16 May 2025</p>",
        filler_kb=150,
    )
    assert parse(page).page_date == date(2025, 5, 16)


# --- HTML ------------------------------------------------------------------------------------


def test_inline_elements_do_not_split_an_item() -> None:
    page = (
        '<ul><li>TMT/USD = <span>0.28575</span> <span class="down">-0.14%</span></li>'
        "<li><b>KGS</b>/<i>USD</i>&nbsp;=&nbsp;<a href='#'><em>0.0</em>1144</a>"
        "<small> &minus;0<sup>%</sup></small></li></ul>"
    )
    snapshot = parse(page)
    assert [(q.pair, str(q.rate), str(q.change_pct)) for q in snapshot.quotes] == [
        ("TMT/USD", "0.28575", "-0.14"),
        ("KGS/USD", "0.01144", "-0"),
    ]


@pytest.mark.parametrize(
    ("html", "change"),
    [
        ("&minus;0.14%", "-0.14"),
        ("&#8722;0.14%", "-0.14"),
        ("&#x2212;0.14&#37;", "-0.14"),
        ("&plus;0.14%", "0.14"),
        ("-0.14&percnt;", "-0.14"),
    ],
)
def test_entities(html: str, change: str) -> None:
    assert one(f"<p>TMT/USD&nbsp;&#61;&#160;0.28575&#x20;{html}</p>") == (
        "TMT/USD",
        "0.28575",
        change,
    )


def test_block_elements_split_items() -> None:
    page = "<div>KGS/USD = 1 0%<br>KZT/USD = 2 0%<div>TJS/USD = 3 0%</div>UZS/USD = 4 0%</div>"
    assert [q.pair for q in parse(page).quotes] == ["KGS/USD", "KZT/USD", "TJS/USD", "UZS/USD"]
    cells = "<table><tr><td>KGS/USD = 1 0%</td><td>KZT/USD = 2 0%</td></tr></table>"
    assert [q.pair for q in parse(cells).quotes] == ["KGS/USD", "KZT/USD"]


def test_pre_keeps_its_lines() -> None:
    page = "<body><pre>KGS/USD = 1 0%\nKZT/USD = 2 -0%\n16 May 2025</pre></body>"
    snapshot = parse(page)
    assert [q.pair for q in snapshot.quotes] == ["KGS/USD", "KZT/USD"]
    assert snapshot.page_date == date(2025, 5, 16)


@pytest.mark.parametrize(
    "hiding",
    [
        "<script>\n{}\n</script>",
        "<script type='text/template'>\n{}\n</script>",
        "<style>\n{}\n</style>",
        "<noscript><ul><li>{}</li></ul></noscript>",
        "<template><ul><li>{}</li></ul></template>",
        "<svg><text>{}</text></svg>",
        "<math><mtext>{}</mtext></math>",
        "<textarea>\n{}\n</textarea>",
        "<select><option>{}</option></select>",
        "<iframe>{}</iframe>",
        "<!--\n{}\n-->",
        "<head><title>{}</title></head>",
    ],
)
def test_hidden_tickers_are_ignored(hiding: str) -> None:
    decoy = "KGS/USD = 9.99 9%"
    snapshot = parse(hiding.format(decoy) + "<p>KGS/USD = 0.01 0%</p>")
    assert one_pair(snapshot) == ("KGS/USD", "0.01", "0")
    assert snapshot.conflicts == ()
    with pytest.raises(ParseError):
        parse("<html><body>" + hiding.format(decoy) + "<p>No rates today.</p></body></html>")


def test_tickers_beyond_the_first_are_found_across_the_whole_page() -> None:
    # a second widget at the very end of a large page: the cut after the first must not lose it
    tail = "<footer><ul><li>EUR/USD = 1.08 0%</li></ul><p>End</p></footer>"
    page = ticker_html(SEED_QUOTES, 8, SEED_DATE, filler_kb=150).replace(
        "</body>", tail + "</body>"
    )
    assert [q.pair for q in parse(page).quotes][-1] == "EUR/USD"
    # the same with the pair split by tags, and with "=" and "/" written as entities
    for item in ("<b>EUR</b>/<b>USD</b> <i>=</i> <u>1.08</u> 0%", "EUR&#47;USD &#61; 1.08 0%"):
        page2 = page.replace("EUR/USD = 1.08 0%", item)
        assert [q.pair for q in parse(page2).quotes][-1] == "EUR/USD", item


def test_selector_scoping() -> None:
    page = ticker_html(SEED_QUOTES, 8, SEED_DATE, filler_kb=50)
    assert quotes_json(parse(page, selector=".ticker")) == SEED_JSON
    assert quotes_json(parse(page, selector="li.ticker-item:nth-child(5)")) == SEED_JSON[4:]
    assert quotes_json(parse(page, selector="ul.ticker-list:last-child li")) == SEED_JSON
    assert quotes_json(parse(page, selector="div, ul, li")) == SEED_JSON  # nested matches
    with pytest.raises(ParseError, match="matches nothing"):
        parse(page, selector=".no-such-class")
    with pytest.raises(ParseError, match="no ticker found in the elements matched by 'footer'"):
        parse(page, selector="footer")


@pytest.mark.parametrize("selector", ["!!!", "div[", "", "   ", "li:nth-child(", "a >> b"])
def test_invalid_selector(selector: str) -> None:
    with pytest.raises(ParseError, match="invalid CSS selector"):
        parse(ticker_html(SEED_QUOTES), selector=selector)
    with pytest.raises(ParseError, match="invalid CSS selector"):
        parse(ticker_text(SEED_QUOTES), selector=selector)


def test_selector_on_a_text_page() -> None:
    with pytest.raises(ParseError, match="not HTML"):
        parse(ticker_text(SEED_QUOTES), selector=".ticker")


def test_a_tag_anywhere_makes_html() -> None:
    text = ticker_text(SEED_QUOTES)
    # as text each line is an item; as HTML (a <b> at the end) the lines run together
    assert len(parse(text).quotes) == 5
    with pytest.raises(ParseError):
        parse(text + "and a <b>bold</b> word\n")
    # "<" in prose is not a tag
    assert len(parse(text + "where 1 < 2 and x<y\n").quotes) == 5


# --- encodings -------------------------------------------------------------------------------


def test_meta_charset_and_boms() -> None:
    page = (
        '<html><head><meta charset="windows-1251"></head><body><p>Курс сома</p>'
        "<ul><li>KGS/USD = 0.01 -0%</li></ul><p>16 May 2025</p></body></html>"
    )
    snapshot = parse(page.encode("cp1251"))
    assert one_pair(snapshot) == ("KGS/USD", "0.01", "-0")
    assert snapshot.page_date == date(2025, 5, 16)
    # read as UTF-8, the cp1251 bytes are garbage, but the ticker is ASCII and still there
    wrong = page.replace("windows-1251", "utf-8").encode("cp1251")
    assert one_pair(parse(wrong)) == ("KGS/USD", "0.01", "-0")
    for encoding, bom in (("utf-8", codecs.BOM_UTF8), ("utf-16-le", codecs.BOM_UTF16_LE)):
        text = ticker_text(SEED_QUOTES, 2, SEED_DATE)
        assert quotes_json(parse(bom + text.encode(encoding))) == SEED_JSON
        assert quotes_json(parse(bom + ticker_html(SEED_QUOTES).encode(encoding))) == SEED_JSON
    http_equiv = '<meta http-equiv="Content-Type" content="text/html; charset=latin1">'
    snapshot = parse((http_equiv + "<p>KGS/USD = 1 0%</p><p>caf\xe9</p>").encode("latin-1"))
    assert one_pair(snapshot) == ("KGS/USD", "1", "0")


def one_pair(snapshot: Snapshot) -> tuple[str, str, str | None]:
    (quote,) = snapshot.quotes
    return quote.pair, str(quote.rate), None if quote.change_pct is None else str(quote.change_pct)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "page",
    [
        "",
        b"",
        " \n\t\n",
        "\x00\x00\x00",
        b"\xff\xfe\xfa\x00\x80\x81",
        "\ud800\udfff lone surrogates",
        "<",
        "<html",
        "<!--",
        "<script>",
        "<div><p><li><table><td>",
        "=" * 1000,
        "KGS/USD = " + "9" * 5000,
        "KGS/USD = 1." + "0" * 5000 + " 0%",
    ],
)
def test_bad_input_raises_parse_error(page: str | bytes) -> None:
    with pytest.raises(ParseError):
        parse(page)


def test_invalid_utf8_around_a_ticker() -> None:
    page = (
        b"\xc3\x28\xa0\xa1 garbage \xf0\x28\x8c\xbc\n"
        + ticker_text(SEED_QUOTES).encode()
        + b"\xff\n"
    )
    assert quotes_json(parse(page)) == SEED_JSON
    html = b"<div>\xe2\x82</div>" + ticker_html(SEED_QUOTES).encode() + b"\xc0\xaf"
    assert quotes_json(parse(html)) == SEED_JSON


def test_binary_garbage() -> None:
    rng = random.Random(1)
    for size in (10, 1000, 100_000, 1_000_000):
        blob = rng.randbytes(size)
        assert_parse_or_error(blob)
        assert_parse_or_error(blob + ticker_text(SEED_QUOTES).encode())


def assert_parse_or_error(page: str | bytes, **kwargs: Any) -> Snapshot | None:
    try:
        snapshot = parse(page, **kwargs)
    except ParseError:
        return None
    assert isinstance(snapshot, Snapshot)
    return snapshot


def timed(page: str | bytes, limit: float, **kwargs: Any) -> Snapshot | None:
    start = time.perf_counter()
    snapshot = assert_parse_or_error(page, **kwargs)
    elapsed = time.perf_counter() - start
    assert elapsed < limit, f"parse took {elapsed:.1f} s"
    return snapshot


FIFTY_MB = 50 * 1024 * 1024


@pytest.mark.timeout(120)
def test_50_mb_inputs_end_in_bounded_time() -> None:
    ticker = ticker_text(SEED_QUOTES, 1).encode()
    assert timed(b"\x00" + bytes(range(256)) * (FIFTY_MB // 256), 20) is None
    line = b"Lorem ipsum dolor sit amet = 5, consectetur adipiscing / elit.\n"
    assert timed(line * (FIFTY_MB // len(line)), 20) is None
    snapshot = timed(ticker * (FIFTY_MB // len(ticker)), 30)
    assert snapshot is not None
    assert quotes_json(snapshot) == SEED_JSON
    html = ticker_html(SEED_QUOTES, date_line=SEED_DATE).encode()
    block = b"<div><p>filler <b>text</b> = 1</p></div>\n"
    snapshot = timed(html + block * (FIFTY_MB // len(block)), 20)
    assert snapshot is not None
    assert quotes_json(snapshot) == SEED_JSON
    assert snapshot.page_date == date(2025, 5, 16)
    assert timed(b"<div>" * (FIFTY_MB // 5), 20) is None


@pytest.mark.timeout(60)
def test_deeply_nested_html() -> None:
    n = 100_000
    item = "<li>KGS/USD = 0.01 0%</li>"
    for opening, closing in (("<div>", "</div>"), ("<ul><li>", ""), ("<section>", "</section>")):
        assert timed(opening * n + "x" + closing * n, 10) is None
        timed(opening * n + item + closing * n, 10)  # past MAX_DEPTH the page is cut: either
    for opening, closing in (("<span>", "</span>"), ("<b>", "</b>"), ("<table><tr><td>", "")):
        snapshot = timed(opening * n + item + closing * n, 10)
        assert snapshot is not None
        assert snapshot.quotes[0].pair == "KGS/USD"
    # "<div>" in a script, a style or a comment is text, not nesting: nothing is cut
    for hidden in (
        "<script>{}</script>",
        "<style>{}</style>",
        "<!--{}-->",
        "<textarea>{}</textarea>",
    ):
        page = hidden.format("<div>" * 9000) + "<ul>" + item + "</ul>"
        snapshot = timed(page, 10)
        assert snapshot is not None, hidden
    deep = "<div>" * (MAX_DEPTH - 10) + item * 3 + "</div>" * (MAX_DEPTH - 10)
    snapshot = timed(page_html(deep, filler_kb=40), 10)
    assert snapshot is not None
    assert snapshot.quotes[0].pair == "KGS/USD"


def test_long_lines_are_not_items() -> None:
    with pytest.raises(ParseError):
        parse("KGS/USD = 1" + " " * 4 * MAX_LINE + "0%")
    with pytest.raises(ParseError):
        parse("• " + "x" * 2000 + " KGS/USD = 1 0%")
    # a run of items up to MAX_LINE is read whole; one past it is not read at all
    item = "KGS/USD = 0.01144 0% | "
    fits = item * (MAX_LINE // len(item))
    assert one_pair(parse(fits)) == ("KGS/USD", "0.01144", "0")
    with pytest.raises(ParseError):
        parse(fits + item * 2)


def test_parse_is_deterministic_and_pure() -> None:
    page = ticker_html(SEED_QUOTES, 8, SEED_DATE, filler_kb=60).encode()
    first = parse(page)
    for _ in range(3):
        again = parse(page)
        assert again == first
        assert again.conflicts == first.conflicts


# --- the page builders -----------------------------------------------------------------------


def test_pages_builders() -> None:
    text = ticker_text(SEED_QUOTES, 8, SEED_DATE)
    lines = text.splitlines()
    assert lines[0] == "• KGS/USD = 0.01144 0%"
    assert lines[1] == "  • KZT/USD = 0.00196 -0%"
    assert lines[-1] == "16 May 2025"
    assert len(lines) == 41
    page = ticker_html(SEED_QUOTES, 8, SEED_DATE, filler_kb=200)
    assert page == ticker_html(SEED_QUOTES, 8, SEED_DATE, filler_kb=200)
    assert 200 * 1024 <= len(page) < 210 * 1024
    assert page.count('class="ticker-item"') == 40
    assert "Via Azerbaijan" not in page
    assert expected_json([("A/B", "1", "−0%")]) == [
        {"pair": "A/B", "base": "A", "quote": "B", "rate": "1", "change_pct": "-0"}
    ]
    with pytest.raises(ValueError, match="unknown form"):
        marquee_html(SEED_QUOTES, form="nope")
