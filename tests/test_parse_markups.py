"""The markups real tickers use: runs of items, tables, definition lists, per-item patterns, the
page's own text of each number, and ``explain``.
"""

from __future__ import annotations

import html
from datetime import date
from decimal import Decimal

import pytest

from monitor.errors import ParseError
from monitor.models import Snapshot
from monitor.parse import Grammar, explain, parse, parse_page
from tests.pages import (
    MARQUEE_FORMS,
    RUN_FORMS,
    SEED_DATE,
    SEED_QUOTES,
    expected_json,
    marquee_html,
    page_html,
    ticker_html,
)

SEED_JSON = expected_json(SEED_QUOTES)
VALUE_KEYS = ("pair", "base", "quote", "rate", "change_pct")


def values(snapshot: Snapshot) -> list[dict[str, str | None]]:
    return [{k: q.to_json()[k] for k in VALUE_KEYS} for q in snapshot.quotes]


def triples(snapshot: Snapshot) -> list[tuple[str, str, str | None]]:
    return [
        (q.pair, str(q.rate), None if q.change_pct is None else str(q.change_pct))
        for q in snapshot.quotes
    ]


# --- every markup, as a whole realistic page -------------------------------------------------


@pytest.mark.parametrize("form", MARQUEE_FORMS)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_every_markup_in_a_200_kb_page_with_decoys(form: str, *, as_bytes: bool) -> None:
    page = ticker_html(SEED_QUOTES, 8, SEED_DATE, filler_kb=200, form=form, comment_decoys=True)
    assert len(page) > 200_000
    assert "<!-- <ul><li>KGS/USD = 9.99999" in page  # the decoys are there to be ignored
    snapshot = parse(page.encode() if as_bytes else page)
    assert values(snapshot) == SEED_JSON
    assert snapshot.page_date == date(2025, 5, 16)
    assert snapshot.conflicts == ()
    # and the same through the selector of its container
    assert values(parse(page, selector=".ticker")) == SEED_JSON


@pytest.mark.parametrize("form", MARQUEE_FORMS)
def test_every_markup_as_a_small_fragment(form: str) -> None:
    snapshot = parse(marquee_html(SEED_QUOTES, 1, form=form) + "<p>16 May 2025</p>")
    assert values(snapshot) == SEED_JSON
    assert snapshot.page_date == date(2025, 5, 16)


@pytest.mark.parametrize("form", [*MARQUEE_FORMS])
def test_a_second_widget_at_the_end_of_a_large_page_is_found(form: str) -> None:
    """The quick cut after the first ticker must see later tickers in every markup."""
    widget = marquee_html([("EUR/USD", "1.0850", "+0.12")], 1, form=form)
    page = ticker_html(SEED_QUOTES, 8, SEED_DATE, filler_kb=150).replace(
        "</main>", widget + "</main>"
    )
    pairs = [q.pair for q in parse(page).quotes]
    assert pairs == [q[0] for q in SEED_QUOTES] + ["EUR/USD"]


def test_a_colon_written_as_an_entity_makes_the_whole_page_read() -> None:
    widget = "<ul><li>EUR/USD&#58; 1.0850 (0%)</li></ul>"
    page = ticker_html(SEED_QUOTES, 8, SEED_DATE, filler_kb=150).replace(
        "</main>", widget + "</main>"
    )
    assert [q.pair for q in parse(page).quotes][-1] == "EUR/USD"


# --- runs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "KGS/USD = 0.01144 0% KZT/USD = 0.00196 -0% TMT/USD = 0.28575 -0.14%",
        "KGS/USD = 0.01144 0% | KZT/USD = 0.00196 -0% | TMT/USD = 0.28575 -0.14%",
        "| KGS/USD = 0.01144 0% | KZT/USD = 0.00196 -0% | TMT/USD = 0.28575 -0.14% |",
        "KGS/USD 0.01144 0% • KZT/USD 0.00196 -0% • TMT/USD 0.28575 -0.14%",
        "• KGS/USD: 0.01144 (0%) · KZT/USD: 0.00196 (-0%) · TMT/USD: 0.28575 (-0.14%)",
        "KGS/USD = 0.01144 0% / KZT/USD = 0.00196 -0% / TMT/USD = 0.28575 -0.14%",
        "KGS/USD = 0.01144 0%; KZT/USD = 0.00196 -0%; TMT/USD = 0.28575 -0.14%",
        "KGS/USD = 0.01144 0% — KZT/USD = 0.00196 -0% — TMT/USD = 0.28575 -0.14%",
        "KGS/USD = 0.01144 0%KZT/USD = 0.00196 -0%TMT/USD = 0.28575 -0.14%",
        "KGS/USD=0.01144 0%|KZT/USD=0.00196 -0%|TMT/USD=0.28575-0.14%",
        "KGS/USD 0.01144 0% ◆ KZT/USD 0.00196 -0% ★ TMT/USD 0.28575 -0.14% ►",
    ],
)
def test_a_run_of_items_on_one_line(line: str) -> None:
    want = [
        ("KGS/USD", "0.01144", "0"),
        ("KZT/USD", "0.00196", "-0"),
        ("TMT/USD", "0.28575", "-0.14"),
    ]
    assert triples(parse(line)) == want
    assert triples(parse(f"<div class=marquee>{html.escape(line)}</div>")) == want
    assert triples(parse(f"<marquee>{html.escape(line)}</marquee>")) == want


def test_a_run_repeated_as_marquees_do_collapses_and_reports_conflicts() -> None:
    run = "KGS/USD = 0.01144 0% | KZT/USD = 0.00196 -0%"
    other = "KGS/USD = 0.01150 0.5% | KZT/USD = 0.00196 -0%"
    snapshot = parse(f"<p>{run}</p><p>{run} | {run}</p><p>{other}</p>")
    assert triples(snapshot) == [("KGS/USD", "0.01144", "0"), ("KZT/USD", "0.00196", "-0")]
    assert snapshot.conflicts == ("KGS/USD",)


@pytest.mark.parametrize(
    "prose",
    [
        "<p>The KGS/USD = 0.01144 0% figure | was quoted by the bank.</p>",
        "<p>Rates today: KGS/USD = 0.01144 0% | KZT/USD = 0.00196 -0%</p>",
        "<p>KGS/USD = 0.01144 0% | KZT/USD = 0.00196 -0% (source: the central bank)</p>",
        "<p>In May <b>KGS/USD 0.01144</b> was the rate; analysts expect 0.012.</p>",
        "<marquee>Breaking: KGS/USD 0.01144 0% after the announcement</marquee>",
    ],
)
def test_a_run_with_other_words_is_prose(prose: str) -> None:
    with pytest.raises(ParseError, match="no ticker found"):
        parse(page_html(prose, filler_kb=40))


def test_inline_spans_of_a_marquee_and_minified_pair_and_rate() -> None:
    page = (
        '<div class="marquee"><span>KGS/USD = 0.01144 <b>0%</b></span> '
        "<span>KZT/USD = 0.00196 <b>-0%</b></span></div>"
        '<div class="w"><span class="p">TMT/USD</span><span class="r">0.28575</span> '
        '<span class="c">-0.14%</span></div>'
    )
    assert triples(parse(page)) == [
        ("KGS/USD", "0.01144", "0"),
        ("KZT/USD", "0.00196", "-0"),
        ("TMT/USD", "0.28575", "-0.14"),
    ]


# --- tables and definition lists -------------------------------------------------------------


def test_table_rows_are_items_and_header_rows_are_ignored() -> None:
    page = page_html(
        '<table class="rates"><caption>Exchange rates, 16 May 2025</caption>'
        "<thead><tr><th>Pair</th><th>Rate</th><th>Change</th></tr></thead><tbody>"
        "<tr><td>KGS/USD</td><td>0.01144</td><td>0%</td></tr>"
        "<tr><th>KZT/USD</th><td><span>0.00196</span></td><td><b>-0%</b></td></tr>"
        "<tr>\n  <td> TMT/USD </td>\n  <td>0.28575</td>\n  <td class=down>&minus;0.14%</td>\n</tr>"
        "<tr><td>USD/UZS</td><td>12,850.50</td><td>(+0.12%)</td></tr>"
        "</tbody></table><p>16 May 2025</p>",
        filler_kb=50,
    )
    snapshot = parse(page)
    assert triples(snapshot) == [
        ("KGS/USD", "0.01144", "0"),
        ("KZT/USD", "0.00196", "-0"),
        ("TMT/USD", "0.28575", "-0.14"),
        ("USD/UZS", "12850.50", "0.12"),
    ]
    assert snapshot.page_date == date(2025, 5, 16)
    assert triples(parse(page, selector="table.rates")) == triples(snapshot)
    assert triples(parse(page, selector="tbody tr")) == triples(snapshot)


def test_table_cells_holding_whole_items_and_layout_tables() -> None:
    cells = "<table><tr><td>KGS/USD = 1 0%</td><td>KZT/USD = 2 0%</td></tr></table>"
    assert [q.pair for q in parse(cells).quotes] == ["KGS/USD", "KZT/USD"]
    layout = (
        "<table><tr><td><div>Menu</div><ul><li>KGS/USD = 1 0%</li><li>KZT/USD = 2 0%</li></ul>"
        "</td><td><p>Sidebar</p></td></tr></table>"
    )
    assert [q.pair for q in parse(layout).quotes] == ["KGS/USD", "KZT/USD"]


def test_a_row_with_other_cells_is_not_an_item_without_a_pattern() -> None:
    page = "<table><tr><td>1</td><td>KGS/USD</td><td>Kyrgyz som</td><td>0.01144</td></tr></table>"
    with pytest.raises(ParseError):
        parse(page)
    grammar = Grammar.from_config(pattern=r"(?P<pair>[A-Z]{3}/[A-Z]{3}) [^0-9]+ (?P<rate>[0-9.]+)")
    assert triples(parse(page, grammar=grammar)) == [("KGS/USD", "0.01144", None)]


def test_definition_lists() -> None:
    page = (
        "<dl><dt>KGS/USD</dt><dd>0.01144 <small>0%</small></dd>"
        "<dt>KZT/USD</dt><dd>0.00196</dd><dd>-0%</dd>"
        "<dt><b>TMT/USD</b></dt>\n<dd><span>0.28575</span> (&minus;0.14%)</dd></dl><p>16 May 2025</p>"
    )
    snapshot = parse(page)
    assert triples(snapshot) == [
        ("KGS/USD", "0.01144", "0"),
        ("KZT/USD", "0.00196", "-0"),
        ("TMT/USD", "0.28575", "-0.14"),
    ]
    assert snapshot.page_date == date(2025, 5, 16)


# --- a pattern applies per item --------------------------------------------------------------

CYRILLIC = Grammar.from_config(
    pattern=r"(?P<base>[A-Z]{3}) \((?P<name>[А-Яа-яё ]+)\):? (?P<rate>\d[\d ]*,\d+)",
    quote_currency="RUB",
    decimal_separator=",",
)


@pytest.mark.parametrize(
    "page",
    [
        "<table><tr><td>USD (доллар США)</td><td>89,50</td></tr>"
        "<tr><td>EUR (евро)</td><td>97,13</td></tr></table>",
        "<dl><dt>USD (доллар США)</dt><dd>89,50</dd><dt>EUR (евро)</dt><dd>97,13</dd></dl>",
        "<marquee>USD (доллар США): 89,50 • EUR (евро): 97,13</marquee>",
        "<p>Курсы: USD (доллар США) 89,50 и EUR (евро) 97,13</p>",
        "USD (доллар США) 89,50\nEUR (евро) 97,13\n",
    ],
    ids=["table", "dl", "marquee", "prose-run", "text"],
)
def test_a_pattern_reads_every_item_of_each_structure(page: str) -> None:
    result = parse_page(page, grammar=CYRILLIC)
    assert triples(result.snapshot) == [("USD/RUB", "89.50", None), ("EUR/RUB", "97.13", None)]
    assert result.warnings == ()


def test_a_pattern_that_reads_part_of_a_run_says_so() -> None:
    grammar = Grammar.from_config(
        pattern=r"(?P<base>USD|EUR) (?P<rate>\d+\.\d+)", quote_currency="KGS"
    )
    result = parse_page("<marquee>USD 87.45 EUR 95.10 RUB 1.05 KZT 0.17</marquee>", grammar=grammar)
    assert [q.pair for q in result.snapshot.quotes] == ["USD/KGS", "EUR/KGS"]
    (warning,) = result.warnings
    assert "read 2 item(s)" in warning
    assert "'RUB 1.05 KZT 0.17'" in warning
    # text around the items that does not look like another one is no reason to warn
    quiet = parse_page("<p>Today: USD 87.45 (official)</p>", grammar=grammar)
    assert quiet.warnings == ()


def test_an_anchored_pattern_demands_the_whole_block() -> None:
    anchored = Grammar.from_config(
        pattern=r"^(?P<base>[A-Z]{3}) (?P<rate>\d+\.\d+)$", quote_currency="KGS"
    )
    with pytest.raises(ParseError, match="pattern"):
        parse("<marquee>USD 87.45 EUR 95.10</marquee>", grammar=anchored)
    assert [q.pair for q in parse("<p>USD 87.45</p><p>EUR 95.10</p>", grammar=anchored).quotes] == [
        "USD/KGS",
        "EUR/KGS",
    ]


def test_warnings_are_capped() -> None:
    grammar = Grammar.from_config(pattern=r"(?P<base>USD) (?P<rate>\d+\.\d+)", quote_currency="KGS")
    page = "".join(f"<p>USD 87.4{i} EUR 9{i}.10</p>" for i in range(9))
    warnings = parse_page(page, grammar=grammar).warnings
    assert len(warnings) == 6
    assert warnings[-1] == "... and 4 more such blocks"


# --- the page's own text ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "rate", "change"),
    [
        ("KGS/USD = 0.01144 +0.09%", "0.01144", "+0.09"),
        ("KGS/USD = 0.09650 −0.14%", "0.09650", "−0.14"),
        ("KGS/USD = 0.01144 -0%", "0.01144", "-0"),
        ("KGS/USD: 0.01144 (+0.5 %)", "0.01144", "+0.5"),
        ("USD/UZS 12,850.50 +0.12%", "12,850.50", "+0.12"),
        ("<p>USD/UZS 12&nbsp;850.50 &plus;0.12%</p>", "12 850.50", "+0.12"),
        ("<p>TMT/USD = 0.28575 &minus;0.14%</p>", "0.28575", "−0.14"),
        ("KGS/USD = 0.01144", "0.01144", None),
    ],
)
def test_each_quote_keeps_the_pages_text(page: str, rate: str, change: str | None) -> None:
    (quote,) = parse(page).quotes
    assert quote.rate_as_written == rate
    assert quote.change_as_written == change


def test_the_pages_text_with_a_decimal_comma_and_a_pattern() -> None:
    comma = Grammar.from_config(decimal_separator=",")
    (quote,) = parse("USD/KZT 12.850,50 (+1,5%)", grammar=comma).quotes
    assert (quote.rate, quote.change_pct) == (Decimal("12850.50"), Decimal("1.5"))
    assert (quote.rate_as_written, quote.change_as_written) == ("12.850,50", "+1,5")
    pattern = Grammar.from_config(
        pattern=r"(?P<base>[A-Z]{3}) (?P<rate>[\d.,]+) (?P<change_pct>\S+)", quote_currency="KGS"
    )
    (quote,) = parse("USD 87.4500 (+0.10%)", grammar=pattern).quotes
    assert (quote.rate_as_written, quote.change_as_written) == ("87.4500", "+0.10")


def test_the_text_never_decides_a_comparison_or_a_conflict() -> None:
    snapshot = parse("KGS/USD = 0.0965 0%\nKGS/USD = 0.09650 +0%\n")
    assert snapshot.conflicts == ()
    assert parse("KGS/USD = 0.0965 +0%") == parse("KGS/USD = 0.09650 0%")


# --- explain ---------------------------------------------------------------------------------


def test_explain_lists_the_blocks_with_their_verdicts() -> None:
    page = page_html(
        '<div class="ticker">'
        + marquee_html(SEED_QUOTES, 8, form="pipes")
        + "</div><p>The KGS/USD = 0.01 rate was mentioned.</p>"
        "<p>KGS/USD and friends</p><p>Rates: KGS/USD 0.01144</p><p>Updated 16/05/2025</p>"
        "<p>KGS/USD rose to</p><p>-0.5%</p>",
        filler_kb=30,
    )
    result = explain(page)
    assert result.kind == "HTML"
    assert [c.verdict for c in result.candidates] == ["quote", "prose", "prose", "no pair"]
    # blocks with a digit but no "/" are not tried: counted, a few shown
    assert result.others > 10
    assert result.examples == ("-0.5%", "Viewing results 1 - 6 of 12", "By Staff Writer 1 May 2025")
    (ticker,) = [c for c in result.candidates if c.verdict == "quote"]
    assert ticker.count == 8
    assert ticker.detail == "read " + ", ".join(q[0] for q in SEED_QUOTES)
    (sentence,) = [c for c in result.candidates if c.text.startswith("The KGS/USD")]
    assert sentence.verdict == "prose"
    assert "'The'" in sentence.detail
    (rates,) = [c for c in result.candidates if c.text.startswith("Rates:")]
    assert (rates.verdict, "'Rates:'" in rates.detail) == ("prose", True)
    assert result.total >= len(result.candidates)
    assert len(explain(page, limit=2).candidates) == 2


def test_explain_with_a_pattern_and_a_selector_and_on_text() -> None:
    grammar = Grammar.from_config(
        pattern=r"^(?P<base>[A-Z]{3}) (?P<rate>\d+\.\d+)$", quote_currency="KGS"
    )
    page = "<div class=w><p>USD 87.45</p><p>EUR 95.10 (official)</p></div><p>Page 2 of 3</p>"
    result = explain(page, grammar=grammar, selector=".w")
    assert [(c.text, c.verdict) for c in result.candidates] == [
        ("USD 87.45", "quote"),
        ("EUR 95.10 (official)", "pattern mismatch"),
    ]
    text = explain("KGS/USD = 0.01 0%\nKGS/USD\nno digits here\nKGS/USD = twelve 5\n")
    assert text.kind == "text"
    assert [c.verdict for c in text.candidates] == ["quote", "no rate"]
    with pytest.raises(ParseError, match="not HTML"):
        explain("KGS/USD = 0.01", selector="p")
    with pytest.raises(ParseError, match="invalid CSS selector"):
        explain(page, selector="###")


def test_explain_on_the_seed_page_shows_the_decoys_are_not_looked_at() -> None:
    page = ticker_html(SEED_QUOTES, 8, SEED_DATE, filler_kb=60, comment_decoys=True)
    texts = [c.text for c in explain(page, limit=1000).candidates]
    assert not [t for t in texts if "9.99999" in t]  # decoys in script, style, comments ...
    assert any(t.startswith("KGS/USD = 0.01144") for t in texts)


@pytest.mark.parametrize("form", RUN_FORMS)
def test_explain_agrees_with_parse(form: str) -> None:
    page = ticker_html(SEED_QUOTES, 3, SEED_DATE, filler_kb=20, form=form)
    read = [c for c in explain(page).candidates if c.verdict == "quote"]
    assert [p for c in read for p in c.detail.removeprefix("read ").split(", ")] == [
        q.pair for q in parse(page).quotes
    ]


def test_explain_never_prints_a_pages_control_characters() -> None:
    page = "<p>KGS/USD \x1b[2J\x1b]0;owned\x07 = 1 0%</p><p>\x1b[31mUSD 1\x1b[0m</p>"
    explanation = explain(page)
    texts = [c.text + c.detail for c in explanation.candidates] + list(explanation.examples)
    assert texts
    assert not [t for t in texts if "\x1b" in t or "\x07" in t]
    assert "\ufffd[2J" in explanation.candidates[0].text
