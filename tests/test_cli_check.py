"""``ticker-monitor check`` as a user runs it on the markups of issue 7: a real process, real files,
a real page server on loopback declaring its own Content-Type.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.pages import (
    BANK_PATTERN,
    FEED_QUERY,
    SEED_DATE,
    SEED_QUOTES,
    bank_html,
    feed_json,
    marquee_html,
    page_html,
    ticker_html,
)
from tests.servers import ThreadedPageServer
from tests.test_cli import cli, one_line_error

CP1251 = "text/html; charset=windows-1251"
BANK_ARGS = ("--pattern", BANK_PATTERN, "--quote-currency", "RUB", "--decimal-separator", ",")


def table_page() -> str:
    return ticker_html(
        [("KGS/USD", "0.01144", "+0.09"), ("USD/UZS", "12,850.50", "−0.12")],
        repeats=1,
        date_line=SEED_DATE,
        filler_kb=60,
        form="rows",
    )


def test_a_table_page_prints_numbers_as_the_page_wrote_them(tmp_path: Path) -> None:
    path = tmp_path / "saved.html"
    path.write_text(table_page(), encoding="utf-8")
    proc = cli("check", str(path))
    assert proc.returncode == 0, proc.stderr
    assert [line.split() for line in proc.stdout.splitlines()] == [
        ["PAIR", "RATE", "CHANGE"],
        ["KGS/USD", "0.01144", "+0.09%"],
        ["USD/UZS", "12,850.50", "−0.12%"],
        ["page", "date:", "2025-05-16"],
    ]
    out = json.loads(cli("check", str(path), "--json").stdout)
    assert out["source"] == str(path)
    assert out["quotes"][1] == {
        "pair": "USD/UZS",
        "base": "USD",
        "quote": "UZS",
        "rate": "12850.50",  # exact decimal strings for scripts ...
        "change_pct": "-0.12",
        "rate_text": "12,850.50",  # ... and the page's own text for people
        "change_text": "−0.12",
    }


def test_a_windows_1251_page_declared_only_by_its_header() -> None:
    body = bank_html().encode("cp1251")
    assert b"charset" not in body
    with ThreadedPageServer(body, content_type=CP1251) as server:
        proc = cli("check", server.url, "--json", *BANK_ARGS)
        unlabelled = cli("check", server.url, *BANK_ARGS, "--charset", "utf-8")
    assert proc.returncode == 0, proc.stderr
    quotes = json.loads(proc.stdout)["quotes"]
    assert [(q["pair"], q["rate"], q["rate_text"]) for q in quotes] == [
        ("USD/RUB", "89.50", "89,50"),
        ("EUR/RUB", "97.13", "97,13"),
        ("KZT/RUB", "0.1712", "0,1712"),
    ]
    # read as UTF-8 (--charset overrides the header), the Cyrillic is garbage: nothing matches
    assert "no ticker found" in one_line_error(unlabelled, 3)


def test_a_saved_windows_1251_file_with_charset(tmp_path: Path) -> None:
    path = tmp_path / "bank.html"
    path.write_bytes(bank_html().encode("cp1251"))
    assert "no ticker found" in one_line_error(cli("check", str(path), *BANK_ARGS), 3)
    proc = cli("check", str(path), *BANK_ARGS, "--charset", "windows-1251")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].split() == ["USD/RUB", "89,50"]


def test_a_json_feed_reads_exactly_through_json_query() -> None:
    with ThreadedPageServer(feed_json(), content_type="application/json") as server:
        proc = cli("check", server.url, "--json-query", FEED_QUERY, "--json")
        plain = cli("check", server.url)
    assert proc.returncode == 0, proc.stderr
    quotes = json.loads(proc.stdout)["quotes"]
    assert [(q["pair"], q["rate"], q["change_pct"]) for q in quotes] == [
        (pair, rate, change) for pair, rate, change in SEED_QUOTES
    ]
    assert quotes[2]["rate"] == "0.09650"  # the JSON text's zero is kept
    assert "read it with a json_query" in one_line_error(plain, 3)


def test_a_json_feed_from_stdin_and_its_failures() -> None:
    proc = cli("check", "-", "--json-query", FEED_QUERY, stdin=feed_json().encode())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[3].split() == ["TJS/USD", "0.09650", "0%"]
    nothing = cli("check", "-", "--json-query", "data.missing", stdin=feed_json().encode())
    assert one_line_error(nothing, 3) == (
        "ticker-monitor: no ticker read from stdin: json_query matched nothing"
    )
    html = cli("check", "-", "--json-query", FEED_QUERY, stdin=b"<p>KGS/USD = 1</p>")
    assert "stdin: not JSON" in one_line_error(html, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--selector", "###"), "--selector: invalid CSS selector '###'"),
        (("--selector", "div["), "--selector: invalid CSS selector"),
        (("--json-query", "data.rates["), "--json-query: invalid JMESPath expression"),
        (("--json-query", "nope(data)"), "--json-query: unknown JMESPath function nope()"),
        (("--json-query", "a", "--selector", "p"), "--selector and --pattern do not apply"),
        (("--pattern", "(?P<rate>\\d+)"), "--pattern: needs a named group"),
        (("--charset", "no-such-charset"), "--charset: 'no-such-charset' is not an encoding"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    path = tmp_path / "saved.html"
    path.write_text(table_page(), encoding="utf-8")
    assert message in one_line_error(cli("check", str(path), *args), 2)


def test_messages_name_the_source_as_given(tmp_path: Path) -> None:
    path = tmp_path / "saved.html"
    path.write_text(page_html("<p>No rates today.</p>"), encoding="utf-8")
    line = one_line_error(cli("check", str(path)), 3)
    assert line == f"ticker-monitor: {path}: no ticker found"
    relative = cli("check", "saved.html", cwd=tmp_path)
    assert one_line_error(relative, 3) == "ticker-monitor: saved.html: no ticker found"
    stdin = cli("check", "-", stdin=b"nothing here")
    assert one_line_error(stdin, 3) == "ticker-monitor: stdin: no ticker found"
    missing = cli("check", str(path), "--selector", ".ticker")
    assert one_line_error(missing, 3) == (
        f"ticker-monitor: no ticker read from {path}: selector '.ticker' matches nothing on the page"
    )
    assert "<invalid url>" not in line + relative.stderr + stdin.stderr + missing.stderr


def test_explain_says_what_was_read_and_why_not(tmp_path: Path) -> None:
    page = page_html(
        '<div class="ticker">'
        + marquee_html(SEED_QUOTES, 8, form="pipes")
        + "</div><p>The KGS/USD = 0.01 rate was mentioned.</p>"
        + "<table><tr><td>1</td><td>EUR/USD</td><td>1.0850</td></tr></table>",
        filler_kb=40,
    )
    path = tmp_path / "saved.html"
    path.write_text(page, encoding="utf-8")
    proc = cli("check", str(path), "--explain")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("explain: HTML; ")
    assert text.startswith("explain: HTML; 3 block(s) that could hold a quote:\n")
    assert "   1. quote    x8  KGS/USD = 0.01144 0% | KZT/USD" in text
    assert "read KGS/USD, KZT/USD, TJS/USD, UZS/USD, TMT/USD" in text
    assert "an item with other text around it: 'The'" in text
    assert "   3. prose        1 EUR/USD 1.0850" in text  # a row with a rank is no item
    assert "block(s) with a digit but no BASE/QUOTE pair, not tried ('Viewing results" in text
    assert text.rstrip().splitlines()[-6].split() == ["PAIR", "RATE", "CHANGE"]
    out = json.loads(cli("check", str(path), "--explain", "--json", "--explain-limit", "2").stdout)
    assert [c["verdict"] for c in out["explain"]["blocks"]] == ["quote", "prose"]
    assert out["explain"]["total"] == 3
    assert len(out["quotes"]) == 5


def test_explain_when_nothing_is_found_still_shows_the_blocks(tmp_path: Path) -> None:
    path = tmp_path / "saved.html"
    path.write_text("<p>Rates: KGS/USD 0.01144 0%</p><p>KGS/USD rose</p>", encoding="utf-8")
    proc = cli("check", str(path), "--explain")
    assert one_line_error(proc, 3) == f"ticker-monitor: {path}: no ticker found"
    assert "prose" in proc.stdout
    assert "'Rates:'" in proc.stdout
    feed = cli("check", "-", "--json-query", "rates[*]", "--explain", stdin=feed_json().encode())
    assert "no match" in feed.stdout
    assert "the document is an object with keys: status, data" in feed.stdout
    one_line_error(feed, 3)
