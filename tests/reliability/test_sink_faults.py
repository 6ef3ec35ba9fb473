"""Sink faults: what a broken Slack or SMTP server gets, and when, while the file sink goes on.

One daemon per sink kind; each phase makes one change on the page and scripts the receiver's
answers to the posts (mails) that carry it. Every phase asserts what arrived and in which window:
the file sink has the change within seconds whatever the fault; the faulty sink gets it exactly
once accepted, after a retry that waited what the fault asked for (``Retry-After`` in both forms,
the sink's timeout for a hang, the backoff otherwise), or never (a permanent refusal).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import formatdate
from pathlib import Path

from tests.daemon_harness import DaemonProcess, free_port, outbox_rows, scrape, wait_for
from tests.receivers import DROP, ThreadedSmtpReceiver
from tests.reliability.conftest import (
    SLACK_PATH,
    SMTP_PASSWORD,
    SMTP_USER,
    Sinks,
    file_messages,
    leaks,
    log_problems,
    mail_messages,
    page_with,
    rate,
    record,
    slack_messages,
    write_config,
)
from tests.servers import Handler, Reply, Request, ThreadedPageServer

#: a retried delivery's backoff: 200 ms doubling up to 1 s
DELIVERY = 'backoff_initial = "200ms"\nbackoff_max = "1s"\n'
#: the file sink has each change within this many seconds, whatever another sink does
FILE_WINDOW = 8.0


def http_date_in(seconds: float) -> Callable[[Request], Reply]:
    """A 429 whose Retry-After is an HTTP date ``seconds`` ahead of when it is answered."""
    return lambda _: Reply(
        429, headers=[("Retry-After", formatdate(time.time() + seconds, usegmt=True))]
    )


@dataclass(frozen=True)
class Phase:
    name: str
    #: what the posts carrying this phase's change get before Slack's "ok"
    faults: tuple[Handler, ...]
    #: the accepted post comes at least this long after the last fault ...
    at_least: float
    #: ... and at most this long after it
    at_most: float


SLACK_PHASES = (
    Phase("429, Retry-After: 2", (Reply(429, headers=[("Retry-After", "2")]),), 1.9, 6.0),
    Phase("429, Retry-After: HTTP date", (http_date_in(3),), 1.5, 7.0),
    Phase("503", (Reply(503, body=b"upstream"),), 0.0, 4.0),
    Phase("hang past the 2 s timeout", (Reply(200, body=b"ok", delay=10),), 1.9, 6.0),
    Phase("accept, then close", (Reply(raw=b""),), 0.0, 4.0),
    Phase("200 without 'ok'", (Reply(200, body=b"<html>captive portal</html>"),), 0.0, 4.0),
    Phase("two faults in a row", (Reply(502), Reply(500)), 0.0, 5.0),
)


def test_slack_faults_are_retried_in_their_window_and_never_hold_the_file_sink(
    tmp_path: Path,
) -> None:
    port = free_port()
    figures: dict[str, object] = {}
    with ThreadedPageServer(page_with(rate(0))) as source, ThreadedPageServer("ok") as slack:
        slack.route(SLACK_PATH, Reply(200, body=b"ok"))
        sinks = Sinks(
            slack_url=slack.url_for(SLACK_PATH), slack_timeout="2s", slack_min_interval="0"
        )
        config = write_config(
            tmp_path, source.url, sinks, delivery=DELIVERY, listen=f"127.0.0.1:{port}"
        )
        audit = tmp_path / "audit.jsonl"
        with DaemonProcess(config) as daemon:
            assert daemon.wait_log("check_done", timeout=30)  # the baseline
            for n, phase in enumerate(SLACK_PHASES, start=1):
                before = len(slack.requests)
                slack.script(*phase.faults)
                source.set_page(page_with(rate(n)))
                changed = time.monotonic()
                assert wait_for(lambda n=n: len(file_messages(audit)) == n, FILE_WINDOW), phase
                filed = time.monotonic() - changed
                tries = len(phase.faults) + 1
                assert wait_for(
                    lambda b=before, t=tries: len(slack.requests) >= b + t, phase.at_most + 10
                ), phase
                posts = slack.requests[before:]
                assert len(posts) == tries, phase  # no extra post
                waited = posts[-1].at - posts[-2].at
                assert phase.at_least <= waited <= phase.at_most, (phase, waited)
                (accepted,) = slack_messages(posts[-1:])
                assert [(e.old, e.new) for e in accepted] == [(rate(n - 1), rate(n))], phase
                figures[phase.name] = {"retry_after_s": round(waited, 2), "file_s": round(filed, 2)}

            # an absurd Retry-After is cut to an hour: the row waits, the others go on
            n = len(SLACK_PHASES) + 1
            slack.script(Reply(429, headers=[("Retry-After", "99999999999")]))
            before = len(slack.requests)
            source.set_page(page_with(rate(n)))
            assert wait_for(lambda: len(file_messages(audit)) == n, FILE_WINDOW)
            assert wait_for(lambda: len(slack.requests) == before + 1, 10)

            def scheduled() -> float | None:
                rows = outbox_rows(tmp_path / "state.db", "pending")
                if len(rows) != 1 or not rows[0]["attempts"]:
                    return None
                return _seconds(rows[0]["next_attempt_at"]) - _seconds(rows[0]["updated_at"])

            assert wait_for(lambda: scheduled() is not None, 5)
            delay = scheduled()
            assert delay is not None
            assert 3599 <= delay <= 3601, delay
            time.sleep(2)
            assert len(slack.requests) == before + 1  # no retry before the hour
            scrape(port, "/healthz", tmp_path)  # kept for the secret grep, as the metrics
            metrics = scrape(port, "/metrics", tmp_path)
            assert 'ticker_monitor_deliveries_total{outcome="retry",sink="slack"}' in metrics
            assert daemon.terminate() == 0
            assert log_problems(daemon.logs()) == []
    figures["absurd Retry-After"] = {"scheduled_in_s": round(delay)}
    record("slack_faults", **figures)


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


WRONG_PASSWORD = "rel-wrong-pw-8Tn2"


def test_smtp_faults_retry_or_dead_letter_and_never_mail_in_clear(tmp_path: Path) -> None:
    extra = f"""
[[rules]]
name = "more"
sinks = ["badauth", "tlsmail"]

[sinks.badauth]
type = "email"
host = "127.0.0.1"
port = PORT
tls = "none"
username = "{SMTP_USER}"
password = "{WRONG_PASSWORD}"
from = "auth@example.org"
to = ["ops@example.org"]

[sinks.tlsmail]
type = "email"
host = "127.0.0.1"
port = PORT
tls = "starttls"
username = "{SMTP_USER}"
password = "{SMTP_PASSWORD}"
from = "tls@example.org"
to = ["ops@example.org"]
"""
    phases: tuple[tuple[str, tuple[str, ...], bool], ...] = (
        ("451 on DATA", ("451 4.3.0 try again",), True),
        ("dropped after DATA", (DROP,), True),
        ("550 on DATA", ("550 5.7.1 refused",), False),
        ("accepted at once", (), True),
    )
    figures: dict[str, object] = {}
    with (
        ThreadedPageServer(page_with(rate(0))) as source,
        ThreadedSmtpReceiver("plain", credentials=(SMTP_USER, SMTP_PASSWORD)) as smtp,
    ):
        sinks = Sinks(smtp_port=smtp.port)
        config = write_config(
            tmp_path,
            source.url,
            sinks,
            delivery=DELIVERY,
            extra=extra.replace("PORT", str(smtp.port)),
        )
        audit = tmp_path / "audit.jsonl"
        h = smtp.handler
        with DaemonProcess(config) as daemon:
            assert daemon.wait_log("check_done", timeout=30)
            for n, (name, replies, delivered) in enumerate(phases, start=1):
                datas, mails = len(h.datas), len(h.mails)
                h.data_replies.extend(replies)
                source.set_page(page_with(rate(n)))
                changed = time.monotonic()
                assert wait_for(lambda n=n: len(file_messages(audit)) == n, FILE_WINDOW), name
                tries = len(replies) + (1 if delivered else 0)
                assert wait_for(lambda d=datas, t=tries: len(h.datas) >= d + t, 15), name
                if delivered:
                    assert wait_for(lambda m=mails: len(h.mails) == m + 1, 5), name
                    (got,) = mail_messages(h.mails[mails:])
                    assert [(e.old, e.new) for e in got] == [(rate(n - 1), rate(n))]
                time.sleep(1.5)  # long enough for a wrong retry to show
                assert len(h.datas) == datas + tries, name  # a 550 is not retried
                assert len(h.mails) == mails + (1 if delivered else 0), name
                figures[name] = {"attempts": tries, "seconds": round(time.monotonic() - changed, 1)}
            rows = outbox_rows(tmp_path / "state.db")
            by_sink = {
                s: [r for r in rows if r["sink"] == s] for s in ("mail", "badauth", "tlsmail")
            }
            assert [r["status"] for r in by_sink["mail"]] == ["sent", "sent", "dead", "sent"]
            assert "550" in by_sink["mail"][2]["last_error"]
            # AUTH 535 is permanent: dead at once, and the password is in no log or error
            assert wait_for(
                lambda: all(
                    r["status"] == "dead"
                    for r in outbox_rows(tmp_path / "state.db")
                    if r["sink"] == "badauth"
                ),
                10,
            )
            rows = outbox_rows(tmp_path / "state.db")
            badauth = [r for r in rows if r["sink"] == "badauth"]
            assert len(badauth) == len(phases)
            assert all("535" in r["last_error"] for r in badauth)
            assert (SMTP_USER, False) in h.logins
            # STARTTLS required but not offered: nothing is sent in clear, it waits (retryable)
            tlsmail = [r for r in rows if r["sink"] == "tlsmail"]
            assert {r["status"] for r in tlsmail} == {"pending"}
            assert "STARTTLS" in tlsmail[0]["last_error"]
            assert "tls@example.org" not in h.mail_froms
            assert daemon.events_named("email_starttls_unavailable")
            assert daemon.terminate() == 0
            assert log_problems(daemon.logs()) == []
    assert leaks(tmp_path, [WRONG_PASSWORD]) == []
    record("smtp_faults", **figures)
