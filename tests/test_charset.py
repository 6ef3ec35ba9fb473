"""Charset as browsers choose it: byte-order mark, HTTP header, ``<meta>``, UTF-8."""

from __future__ import annotations

import codecs
from datetime import date

import pytest

from monitor.charset import charset_of, codec_for, decode, to_utf8
from monitor.errors import ParseError
from monitor.parse import Grammar, parse
from tests.pages import SEED_DATE, SEED_QUOTES, expected_json, ticker_html, ticker_text

#: A Central Asian bank's table, Cyrillic around the codes: only a pattern reads it.
RUB_PAGE = (
    "<html><head><title>Курсы валют</title></head><body><h1>Курсы валют ЦБ</h1>"
    "<table><tr><th>Валюта</th><th>Курс</th></tr>"
    "<tr><td>Доллар США (USD)</td><td>89,50</td></tr>"
    "<tr><td>Евро (EUR)</td><td>97,13</td></tr></table><p>16 May 2025</p></body></html>"
)
RUB = Grammar.from_config(
    pattern=r"(?:Доллар США|Евро) \((?P<base>[A-Z]{3})\) (?P<rate>\d+,\d+)",
    quote_currency="RUB",
    decimal_separator=",",
)


@pytest.mark.parametrize(
    ("header", "label"),
    [
        ("text/html; charset=windows-1251", "windows-1251"),
        ('text/html; charset="UTF-8"', "UTF-8"),
        ("text/html;charset=koi8-r; foo=bar", "koi8-r"),
        ("application/json; Charset=utf-8", "utf-8"),
        ("text/html", None),
        ("", None),
        (None, None),
    ],
)
def test_charset_of_a_content_type(header: str | None, label: str | None) -> None:
    assert charset_of(header) == label


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("windows-1251", "cp1251"),
        ("CP1251", "cp1251"),
        ("x-cp1251", "cp1251"),
        ("utf8", "utf-8"),
        ("latin1", "cp1252"),  # the Encoding Standard: latin1 and ascii mean windows-1252
        ("ISO-8859-1", "cp1252"),
        ("us-ascii", "cp1252"),
        ("iso-8859-9", "cp1254"),
        ("koi8-r", "koi8-r"),
        ("shift_jis", "cp932"),
        ("gb2312", "gbk"),
        ("euc-kr", "cp949"),
        ("utf-16", "utf-16-le"),
        ("utf-7", None),  # not a web encoding
        ("rot13", None),
        ("unicode_escape", None),
        ("no-such-charset", None),
        ("", None),
        ("utf-8; drop table", None),
    ],
)
def test_labels_mean_what_they_mean_to_browsers(label: str, codec: str | None) -> None:
    assert codec_for(label) == codec


def test_the_order_is_bom_header_meta_utf8() -> None:
    text = "<meta charset=koi8-r><p>Курс</p>"
    cp1251 = text.encode("cp1251")
    assert decode(cp1251, "windows-1251") == text  # the header, over the page's own meta
    assert decode(text.encode("koi8-r")) == text  # the meta, without a header
    assert decode(text.encode("koi8-r"), "no-such-label") == text  # an unknown label: next step
    assert decode(codecs.BOM_UTF8 + text.encode(), "windows-1251") == text  # the BOM first
    assert decode(codecs.BOM_UTF16_LE + text.encode("utf-16-le"), "windows-1251") == text
    assert decode("<p>Курс</p>".encode()) == "<p>Курс</p>"  # else UTF-8
    # a <meta> naming UTF-16 means UTF-8; only HTML has a <meta>
    assert (
        decode('<meta charset="utf-16"><p>Курс</p>'.encode())
        == '<meta charset="utf-16"><p>Курс</p>'
    )
    assert decode(text.encode("koi8-r"), html=False) != text
    assert to_utf8(b"plain ascii") == b"plain ascii"


def test_a_windows_1251_page_declared_only_by_its_header() -> None:
    raw = RUB_PAGE.encode("cp1251")
    assert b"charset" not in raw
    snapshot = parse(raw, grammar=RUB, charset="windows-1251")
    assert [(q.pair, str(q.rate), q.rate_as_written) for q in snapshot.quotes] == [
        ("USD/RUB", "89.50", "89,50"),
        ("EUR/RUB", "97.13", "97,13"),
    ]
    assert snapshot.page_date == date(2025, 5, 16)
    with pytest.raises(ParseError, match="pattern"):
        parse(raw, grammar=RUB)  # read as UTF-8 the Cyrillic is garbage: nothing matches


def test_the_header_beats_a_wrong_meta_and_a_text_page_uses_it_too() -> None:
    lying = RUB_PAGE.replace("<head>", '<head><meta charset="utf-8">').encode("cp1251")
    assert len(parse(lying, grammar=RUB, charset="cp1251").quotes) == 2
    text = "Доллар США (USD) 89,50\nЕвро (EUR) 97,13\n".encode("cp1251")
    assert [q.pair for q in parse(text, grammar=RUB, charset="windows-1251").quotes] == [
        "USD/RUB",
        "EUR/RUB",
    ]


def test_ascii_tickers_read_whatever_the_declared_charset() -> None:
    want = expected_json(SEED_QUOTES)
    page = ticker_html(SEED_QUOTES, 8, SEED_DATE, filler_kb=60)
    for label in ("utf-8", "windows-1251", "iso-8859-1", "koi8-r", "bogus"):
        got = parse(page.encode(), charset=label).quotes
        assert [{k: q.to_json()[k] for k in want[0]} for q in got] == want, label
    utf16 = codecs.BOM_UTF16_LE + ticker_text(SEED_QUOTES).encode("utf-16-le")
    assert len(parse(utf16, charset="windows-1251").quotes) == 5
    assert len(parse(ticker_text(SEED_QUOTES).encode("utf-16-le"), charset="utf-16").quotes) == 5
