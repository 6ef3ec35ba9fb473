"""JSON feeds: a JMESPath query picks the quotes; numbers are read exactly as the JSON wrote them."""

from __future__ import annotations

import codecs
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.errors import ParseError
from monitor.feed import compile_query, explain_feed, is_json, read_feed
from monitor.parse import Grammar
from monitor.reader import Reader

FEED = b"""{"data": {"updated": "2025-05-16T10:00:00Z", "rates": [
  {"symbol": "KGS/USD", "price": 0.01144, "pct": 0},
  {"symbol": "KZT/USD", "price": 0.00196, "pct": -0.0},
  {"symbol": "TJS/USD", "price": 0.09650, "pct": 0},
  {"symbol": "UZS/USD", "price": 8e-5, "pct": 0.00},
  {"symbol": "TMT/USD", "price": 0.28575, "pct": -0.14}
]}}"""
QUERY = compile_query("data.rates[*].{pair: symbol, rate: price, change_pct: pct}")
QUERY_ALL = compile_query("[*]")


def read(body: bytes | str, query: str, **kwargs: Any) -> list[tuple[str, str, str | None]]:
    snapshot = read_feed(body, compile_query(query), **kwargs).snapshot
    return [
        (q.pair, str(q.rate), None if q.change_pct is None else str(q.change_pct))
        for q in snapshot.quotes
    ]


def test_numbers_are_read_exactly_as_written() -> None:
    snapshot = read_feed(FEED, QUERY).snapshot
    assert [(q.pair, q.rate, q.change_pct) for q in snapshot.quotes] == [
        ("KGS/USD", Decimal("0.01144"), Decimal("0")),
        ("KZT/USD", Decimal("0.00196"), Decimal("-0.0")),
        ("TJS/USD", Decimal("0.09650"), Decimal("0")),
        ("UZS/USD", Decimal("0.00008"), Decimal("0.00")),
        ("TMT/USD", Decimal("0.28575"), Decimal("-0.14")),
    ]
    tjs = snapshot.quotes[2]
    assert str(tjs.rate) == "0.09650"  # the zero is kept: never through float
    assert tjs.rate.as_tuple() == Decimal("0.09650").as_tuple()
    assert type(tjs.rate) is Decimal  # the JSON number class stays inside the feed module
    uzs = snapshot.quotes[3]
    assert (uzs.rate_as_written, uzs.to_json()["rate"]) == ("8e-5", "0.00008")
    assert str(snapshot.quotes[1].change_pct) == "-0.0"
    assert snapshot.page_date is None


@settings(deadline=None, max_examples=200)
@given(
    digits=st.integers(min_value=0, max_value=10**15),
    exponent=st.integers(min_value=-12, max_value=4),
    change=st.decimals(allow_nan=False, allow_infinity=False, places=6),
)
def test_any_json_number_reads_back_exactly(digits: int, exponent: int, change: Decimal) -> None:
    rate = format(Decimal(digits).scaleb(exponent), "f")
    body = f'[{{"pair": "AAA/BBB", "rate": {rate}, "change_pct": {change}}}]'
    (quote,) = read_feed(body.encode(), compile_query("[*]")).snapshot.quotes
    assert quote.rate.as_tuple() == Decimal(rate).as_tuple()
    assert quote.change_pct is not None
    assert quote.change_pct.as_tuple() == change.as_tuple()
    assert quote.rate_as_written == rate


@pytest.mark.parametrize(
    ("element", "want"),
    [
        ({"pair": "KGS/USD", "rate": "0.09650"}, ("KGS/USD", "0.09650", None)),
        (
            {"pair": "usd-uzs", "rate": "12,850.50", "change_pct": "+0.12%"},
            ("USD/UZS", "12850.50", "0.12"),
        ),
        (
            {"pair": "USD_KZT", "rate": 529.96, "change_pct": "(-0.5 %)"},
            ("USD/KZT", "529.96", "-0.5"),
        ),
        ({"base": "EUR", "quote": "USD", "rate": 1.085}, ("EUR/USD", "1.085", None)),
        ({"pair": "TMT/USD", "rate": 1, "change_pct": None}, ("TMT/USD", "1", None)),
    ],
)
def test_pairs_and_numeric_strings(
    element: dict[str, object], want: tuple[str, str, str | None]
) -> None:
    assert read(json.dumps([element]), "[*]") == [want]


def test_a_single_code_takes_the_quote_currency_and_a_decimal_comma() -> None:
    body = '{"rates": {"USD": "89,50", "EUR": "97,13"}}'
    query = "rates | [{pair: 'USD', rate: USD}, {pair: 'EUR', rate: EUR}]"
    grammar = Grammar.from_config(quote_currency="RUB", decimal_separator=",")
    assert read(body, query, grammar=grammar) == [
        ("USD/RUB", "89.50", None),
        ("EUR/RUB", "97.13", None),
    ]


def test_filters_and_functions_work_on_exact_numbers() -> None:
    assert read(FEED, "data.rates[?price > `0.05`].{pair: symbol, rate: price}") == [
        ("TJS/USD", "0.09650", None),
        ("TMT/USD", "0.28575", None),
    ]
    pairs = read(FEED, "sort_by(data.rates, &price)[*].{pair: symbol, rate: price}")
    assert [p for p, _, _ in pairs] == ["UZS/USD", "KZT/USD", "KGS/USD", "TJS/USD", "TMT/USD"]
    assert read(FEED, "max_by(data.rates, &pct).{pair: symbol, rate: price}") == [
        ("KGS/USD", "0.01144", None)
    ]
    assert read(
        FEED, "data.rates[?symbol=='TMT/USD'].{pair: symbol, rate: price, change_pct: abs(pct)}"
    ) == [("TMT/USD", "0.28575", "0.14")]
    assert read('[{"p": "A1/B2", "r": "0.10"}]', "[*].{pair: p, rate: to_number(r)}") == [
        ("A1/B2", "0.10", None)
    ]


def test_a_dict_result_is_one_element_and_elements_that_are_no_quotes_are_left_out() -> None:
    assert read('{"q": {"pair": "KGS/USD", "rate": 0.01}}', "q") == [("KGS/USD", "0.01", None)]
    body = json.dumps(
        [
            {"pair": "KGS/USD", "rate": None},  # a closed market
            {"pair": "KZT/USD", "rate": 0.00196},
            {"pair": "KZTUSD", "rate": 1},
            {"pair": "X/USD", "rate": 1},
            {"pair": "KGS/USD", "rate": -1},
            {"pair": "KGS/USD", "rate": "n/a"},
            {"pair": "KGS/USD", "rate": True},
            {"pair": 7, "rate": 1},
            "KGS/USD 0.01",
        ]
    )
    result = read_feed(body, compile_query("[*]"))
    assert [q.pair for q in result.snapshot.quotes] == ["KZT/USD"]
    assert result.warnings == (
        "json_query: element 1: no rate, left out",
        "json_query: element 3: pair 'KZTUSD' is not BASE/QUOTE (or set quote_currency), left out",
        "json_query: element 4: X/USD is not a pair of currency codes, left out",
        "json_query: element 5: rate -1 is negative, left out",
        "json_query: element 6: rate 'n/a' is not a number, left out",
        "json_query: ... and 3 more left out",
    )


def test_floats_made_by_the_query_are_refused() -> None:
    with pytest.raises(ParseError, match="float from the query"):
        read(FEED, "data.rates[*].{pair: symbol, rate: `0.5`}")
    with pytest.raises(ParseError, match="float from the query"):
        read(FEED, "data.rates[*].{pair: symbol, rate: price, change_pct: `-0.25`}")


def test_repeats_are_deduplicated_and_conflicts_named() -> None:
    rates = [("AAA/USD", 1), ("BBB/USD", 2), ("AAA/USD", 1), ("BBB/USD", 3)]
    body = json.dumps([{"pair": pair, "rate": rate} for pair, rate in rates])
    snapshot = read_feed(body, compile_query("[*]")).snapshot
    assert [(q.pair, str(q.rate)) for q in snapshot.quotes] == [("AAA/USD", "1"), ("BBB/USD", "2")]
    assert snapshot.conflicts == ("BBB/USD",)


@pytest.mark.parametrize(
    ("body", "query", "message"),
    [
        (FEED, "data.missing", "json_query matched nothing"),
        (FEED, "data.rates[?price > `5`]", "json_query matched nothing"),
        (FEED, "data.updated", "yields a string, not a list of objects"),
        (FEED, "length(data.rates)", "yields a number"),
        (FEED, "data.rates[*].symbol", "no quote in what json_query yields"),
        (b"<html><body>KGS/USD = 1</body></html>", "[*]", "not JSON: Expecting value"),
        (b'{"a": NaN}', "a", "NaN is not a JSON number"),
        (b'{"a": 1', "a", "not JSON"),
        (b"", "a", "not JSON"),
        (b"[" * 100_000, "a", "nested too deeply"),
        (b'{"a": [1, "x"]}', "sort(a)", "json_query failed"),
        (b'[{"a": "x", "b": 1}]', "[?a > b]", "json_query failed"),
    ],
)
def test_what_is_a_parse_failure(body: bytes, query: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        read_feed(body, compile_query(query))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("data.rates[", "invalid JMESPath expression"),
        ("data.rates[*].{pair: symbol", "invalid JMESPath expression"),
        ("no_such_function(data)", "unknown JMESPath function no_such_function()"),
        ("data.rates[*].{pair: upper(symbol)}", "unknown JMESPath function upper()"),
        ("", "empty JMESPath expression"),
    ],
)
def test_invalid_queries_are_refused_when_compiled(query: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_query(query)


def test_charset_and_bom() -> None:
    body = '[{"pair": "USD/RUB", "rate": "89,50", "name": "доллар"}]'
    grammar = Grammar.from_config(decimal_separator=",")
    assert read(body.encode("cp1251"), "[*]", grammar=grammar, charset="windows-1251") == [
        ("USD/RUB", "89.50", None)
    ]
    assert read(codecs.BOM_UTF8 + body.encode(), "[*]", grammar=grammar) == [
        ("USD/RUB", "89.50", None)
    ]
    assert read(codecs.BOM_UTF16_LE + body.encode("utf-16-le"), "[*]", grammar=grammar) == [
        ("USD/RUB", "89.50", None)
    ]


def test_content_types_and_the_reader() -> None:
    assert is_json("application/json; charset=utf-8")
    assert is_json("application/vnd.api+json")
    assert is_json("text/json")
    assert not is_json("text/html")
    assert not is_json("")
    feed = Reader(query=QUERY)
    assert [q.pair for q in feed.read(FEED).snapshot.quotes][:1] == ["KGS/USD"]
    # with a query, JSON is read whatever the Content-Type says; a page that is not JSON says so
    assert len(feed.read(FEED, "text/plain").snapshot.quotes) == 5
    with pytest.raises(ParseError, match="the response is text/html, not JSON"):
        feed.read(b"<p>KGS/USD = 1</p>", "text/html; charset=utf-8")
    # without a query, a JSON response that the page parser cannot read gets a hint
    with pytest.raises(ParseError, match="the response is JSON: read it with a json_query"):
        Reader().read(FEED, "application/json")
    # the header's charset, unless the reader is told another
    body = '[{"pair": "USD/RUB", "rate": "89,50", "name": "доллар"}]'.encode("cp1251")
    comma = Grammar.from_config(decimal_separator=",")
    read = Reader(grammar=comma, query=QUERY_ALL).read(body, "application/json; charset=cp1251")
    assert read.snapshot.quotes[0].pair == "USD/RUB"
    forced = Reader(grammar=comma, query=QUERY_ALL, charset="windows-1251").read(body, "text/plain")
    assert forced.snapshot.quotes[0].rate == Decimal("89.50")


def test_explain_shows_each_element_and_why() -> None:
    body = json.dumps([{"s": "KGS/USD", "p": 0.01144, "c": "+0.09"}, {"s": "KZT/USD", "p": None}])
    explanation = explain_feed(body, compile_query("[*].{pair: s, rate: p, change_pct: c}"))
    assert explanation.kind == "JSON"
    assert [(c.verdict, c.detail) for c in explanation.candidates] == [
        ("quote", "read KGS/USD 0.01144 +0.09%"),
        ("skipped", "no rate"),
    ]
    assert (
        explanation.candidates[0].text
        == '{"pair": "KGS/USD", "rate": 0.01144, "change_pct": "+0.09"}'
    )
    (nothing,) = explain_feed(FEED, compile_query("rates[*]")).candidates
    assert nothing.verdict == "no match"
    assert nothing.detail == "the document is an object with keys: data"
    (scalar,) = explain_feed(FEED, compile_query("data.updated")).candidates
    assert scalar.verdict == "no list"
    assert len(explain_feed(FEED, QUERY, limit=2).candidates) == 2
    assert explain_feed(FEED, QUERY, limit=2).total == 5
