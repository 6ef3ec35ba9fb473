"""Restarts: a SIGKILL mid-send, mid-digest or a SIGTERM mid-check, and what the next life does.

- A life killed while a Slack post is in flight held its rows' leases (60 s here, four times the
  default, so that waiting them out would show); the next life releases them at start (they are its
  own previous life's) and sends at once.
- A life killed in the middle of a split digest (60 changes: three posts) re-sends only the post
  that was in flight, never the ones Slack had already accepted.
- SIGTERM while a check outlives the grace period: the check is abandoned with one warning, the
  process exits 0, and no traceback is printed.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from tests.daemon_harness import DaemonProcess, outbox_rows, wait_for
from tests.pages import SEED_DATE, ticker_html
from tests.reliability.conftest import (
    SLACK_PATH,
    Sinks,
    chain,
    duplicates,
    log_problems,
    page_with,
    rate,
    record,
    slack_messages,
    write_config,
)
from tests.servers import Reply, Request, ThreadedPageServer


class Gate:
    """A Slack stand-in that answers posts "ok", but never answers the ``hold``-th one (1-based):
    the daemon is killed while it waits."""

    def __init__(self, hold: int) -> None:
        self.hold = hold
        self.count = 0
        self.held = threading.Event()

    def __call__(self, request: Request) -> Reply:
        self.count += 1
        if self.count == self.hold:
            self.held.set()
            return Reply(200, body=b"ok", delay=120)
        return Reply(200, body=b"ok")


def test_a_restart_sends_at_once_what_its_killed_life_held(tmp_path: Path) -> None:
    gate = Gate(hold=1)
    with ThreadedPageServer(page_with(rate(0))) as source, ThreadedPageServer("ok") as slack:
        slack.route(SLACK_PATH, gate)
        config = write_config(
            tmp_path,
            source.url,
            Sinks(slack_url=slack.url_for(SLACK_PATH)),
            delivery='lease = "60s"',
        )
        with DaemonProcess(config) as first:
            assert first.wait_log("check_done", timeout=30)
            source.set_page(page_with(rate(1)))
            assert gate.held.wait(timeout=15)  # the post is in flight, its row leased for 60 s
            first.kill()
        with DaemonProcess(config) as second:
            assert second.wait_log("daemon_started", timeout=30)
            up = time.monotonic()
            assert wait_for(lambda: gate.count >= 2, timeout=15)  # not after 60 s
            resent = round(time.monotonic() - up, 2)
            # its previous life is known to have ended: given back (targets and claims) at join
            (gone,) = second.events_named("cluster_member_gone")
            assert gone["reason"] == "its process has ended"
            assert wait_for(
                lambda: {r["status"] for r in outbox_rows(tmp_path / "state.db")} == {"sent"}, 10
            )
            assert second.terminate() == 0
            assert log_problems(first.logs() + second.logs()) == []
    got = slack_messages(slack.requests)
    assert [(e.old, e.new) for e in chain(got)] == [(rate(0), rate(1))]
    record("restart_releases_own_leases", resent_after_start_s=resent, lease_s=60)


def many_pairs_page(step: int, pairs: int = 60) -> str:
    """A marquee of ``pairs`` pairs (P00/USD ...), every rate at ``1 + step`` hundred-thousandths."""
    quotes = [(f"P{i:02d}/USD", rate(step), "0") for i in range(pairs)]
    return ticker_html(quotes, date_line=SEED_DATE, filler_kb=5)


def test_a_kill_mid_digest_resends_only_the_post_in_flight(tmp_path: Path) -> None:
    gate = Gate(hold=2)  # the second of three posts hangs: the first was accepted
    with ThreadedPageServer(many_pairs_page(0)) as source, ThreadedPageServer("ok") as slack:
        slack.route(SLACK_PATH, gate)
        config = write_config(
            tmp_path,
            source.url,
            Sinks(slack_url=slack.url_for(SLACK_PATH), slack_timeout="30s"),
        )
        with DaemonProcess(config) as first:
            assert first.wait_log("check_done", timeout=30)
            source.set_page(many_pairs_page(1))  # 60 changes in one check: 3 posts
            assert gate.held.wait(timeout=15)
            first.kill()
        with DaemonProcess(config) as second:
            assert wait_for(lambda: gate.count >= 4, timeout=20)  # posts 2 and 3 again
            assert wait_for(
                lambda: {r["status"] for r in outbox_rows(tmp_path / "state.db")} == {"sent"}, 10
            )
            time.sleep(1.5)  # long enough for a wrong re-send of post 1 to show
            assert second.terminate() == 0
            assert log_problems(first.logs() + second.logs()) == []
    posts = slack_messages(slack.requests)
    assert [len(p) for p in posts] == [24, 24, 24, 12]  # 1, 2 (killed), then 2 and 3 again
    assert duplicates(posts) == 1  # the one in flight at the kill, and only it
    assert {e.pair for e in chain(posts)} == {f"P{i:02d}/USD" for i in range(60)}
    record("kill_mid_digest", posts=len(posts), duplicate_posts=duplicates(posts), events=60)


def test_sigterm_past_the_grace_period_abandons_the_check_without_a_traceback(
    tmp_path: Path,
) -> None:
    with ThreadedPageServer(page_with(rate(0))) as source:
        config = write_config(
            tmp_path,
            source.url,
            Sinks(),
            interval="5s",  # a 5 s deadline: the check outlives the 1 s grace period
            grace="1s",
        )
        source.default = Reply(200, body=page_with(rate(0)).encode(), delay=20)
        with DaemonProcess(config) as daemon:
            assert wait_for(lambda: len(source.requests) >= 1, timeout=20)
            daemon.proc.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            assert daemon.proc.wait(timeout=15) == 0
            took = round(time.monotonic() - stopped, 2)
            logs = daemon.logs()
    assert [e["event"] for e in logs if e["event"] == "check_abandoned"] == ["check_abandoned"]
    assert log_problems(logs) == []  # no CancelledError traceback, no raw output
    assert not [e for e in logs if e.get("level") == "error"]
    record("sigterm_past_grace", exit_after_s=took, grace_s=1)
