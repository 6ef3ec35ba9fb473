"""The crash loop: the daemon SIGKILLed at random moments, again and again, loses nothing.

A page whose TMT/USD rate moves by one step on every request; Slack, email and a file sink; the
daemon killed ``RELIABILITY_KILLS`` (30) times, each life at a random moment up to 2.5 s after it
started. Then a last life with the page frozen. The promise, for every sink:

- the chain of values is unbroken: each event's old rate is the previous event's new rate, from
  the baseline to the last committed value, and every committed outbox row was delivered;
- duplicate messages are at most one per kill, and a duplicated event carries one dedup id;
- the last life delivers the backlog at once (its dead predecessors' leases are released at start,
  not waited out: the lease is 60 s here, four times the default, so that waiting would show);
- ``PRAGMA integrity_check`` is ok, and no life logged a traceback.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.daemon_harness import DaemonProcess, outbox_rows, wait_for
from tests.receivers import ThreadedSmtpReceiver
from tests.reliability.conftest import (
    SLACK_PATH,
    SMTP_PASSWORD,
    SMTP_USER,
    Sinks,
    chain,
    dedup_ids_per_event,
    duplicates,
    file_messages,
    log_problems,
    mail_messages,
    page_with,
    rate,
    record,
    slack_messages,
    write_config,
)
from tests.servers import Reply, Request, ThreadedPageServer

KILLS = int(os.environ.get("RELIABILITY_KILLS", "30"))


class MovingPage:
    """Serves the page with the next rate on every request, until frozen."""

    def __init__(self) -> None:
        self.n = 0
        self.frozen = False
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Reply:
        with self._lock:
            if not self.frozen:
                self.n += 1
            body = page_with(rate(self.n)).encode()
        return Reply(200, body=body, headers=[("Content-Type", "text/html; charset=utf-8")])


def committed(db: Path) -> tuple[str, str]:
    """(the baseline rate, the last committed rate) of TMT/USD, from the store's own tables."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (first,) = conn.execute("SELECT snapshot_json FROM observations ORDER BY id LIMIT 1")
        (state,) = conn.execute("SELECT state_json FROM targets WHERE name = 'timesca'")
    finally:
        conn.close()

    def tmt(snapshot: dict[str, object]) -> str:
        quotes = snapshot["quotes"]
        assert isinstance(quotes, list)
        return next(str(q["rate"]) for q in quotes if q["pair"] == "TMT/USD")

    return tmt(json.loads(first[0])), tmt(json.loads(state[0])["snapshot"])


def integrity(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.timeout(600)
def test_thirty_sigkills_lose_nothing_and_duplicate_at_most_one_message_each(
    tmp_path: Path,
) -> None:
    rng = random.Random(int(os.environ.get("RELIABILITY_SEED", "10")))
    moving = MovingPage()
    lives: list[DaemonProcess] = []
    with (
        ThreadedPageServer() as source,
        ThreadedPageServer("ok") as slack,
        ThreadedSmtpReceiver("plain", credentials=(SMTP_USER, SMTP_PASSWORD)) as smtp,
    ):
        source.default = moving
        # Slack takes a moment to answer, so that some kills land while a post is in flight
        slack.route(SLACK_PATH, lambda _: Reply(200, body=b"ok", delay=rng.uniform(0, 0.3)))
        config = write_config(
            tmp_path,
            source.url,
            Sinks(slack_url=slack.url_for(SLACK_PATH), smtp_port=smtp.port),
            delivery='lease = "60s"',
        )
        db = tmp_path / "state.db"
        started = time.monotonic()
        for _ in range(KILLS):
            with DaemonProcess(config) as life:
                lives.append(life)
                assert life.wait_log("daemon_started", timeout=60), life.logs()
                time.sleep(rng.uniform(0.0, 2.5))
                life.kill()
        killed_after = time.monotonic() - started
        moving.frozen = True
        with DaemonProcess(config) as last:
            lives.append(last)
            assert last.wait_log("daemon_started", timeout=60)
            up = time.monotonic()

            def settled() -> bool:
                rows = outbox_rows(db)
                return (
                    bool(rows)
                    and all(r["status"] == "sent" for r in rows)
                    and (committed(db)[1] == rate(moving.n))
                )

            # well inside the 60 s lease: the killed lives' leases are released at start
            assert wait_for(settled, timeout=30, every=0.1), outbox_rows(db, "pending")
            drained = time.monotonic() - up
            assert last.terminate() == 0
        slack_got = slack_messages([r for r in slack.requests if r.path == SLACK_PATH])
        mail_got = mail_messages(smtp.handler.mails)
    file_got = file_messages(tmp_path / "audit.jsonl")

    baseline, final = committed(db)
    rows = outbox_rows(db)
    figures: dict[str, object] = {
        "kills": KILLS,
        "seconds": round(killed_after),
        "committed_changes": len(rows) // 3,
        "last_life_drained_s": round(drained, 1),
    }
    for sink, got in (("slack", slack_got), ("mail", mail_got), ("audit", file_got)):
        events = chain(got)
        values = [baseline] + [e.new for e in events]
        assert [e.old for e in events] == values[:-1], f"{sink}: the chain is broken"
        assert values[-1] == final == rate(moving.n), f"{sink}: the last change is missing"
        assert len(events) == sum(1 for r in rows if r["sink"] == sink), sink
        assert duplicates(got) <= KILLS, sink
        assert all(len(ids) == 1 for ids in dedup_ids_per_event(got).values()), sink
        figures[f"{sink}_messages"] = len(got)
        figures[f"{sink}_duplicates"] = duplicates(got)
    assert figures["committed_changes"] >= KILLS // 2  # the lives really did work
    assert integrity(db) == "ok"
    for life in lives:
        assert log_problems(life.logs()) == [], life.log_path
    record("crash_loop", **figures)
