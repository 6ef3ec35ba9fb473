"""Clock steps: the wall clock jumps back or forward under the running daemon; checks and retries
keep their monotonic pace.

The daemon runs under libfaketime (Debian's ``faketime`` package; ``.ci/run`` installs it) with
the offset read from a file the test rewrites, and the monotonic clock left alone
(``FAKETIME_DONT_FAKE_MONOTONIC=1``), as an NTP step or an operator's ``date -s`` does. After
each step the 1 s target must make two more checks within 8 s, and a change must reach the file
sink within a few seconds; a Slack retry due when the clock goes back an hour must still come
within seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.daemon_harness import DaemonProcess, wait_for
from tests.reliability.conftest import (
    SLACK_PATH,
    Sinks,
    file_messages,
    log_problems,
    page_with,
    rate,
    record,
    require,
    slack_messages,
    write_config,
)
from tests.servers import Reply, ThreadedPageServer

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
#: two checks of the 1 s target follow a step within this long (a check's own commit can take a
#: few seconds on a loaded machine; before the fix none came for the length of the step)
WINDOW = 8.0


def test_checks_and_retries_survive_the_wall_clock_stepping_back_and_forward(
    tmp_path: Path,
) -> None:
    require(LIBFAKETIME.exists(), f"libfaketime is not installed ({LIBFAKETIME}; apt faketime)")
    offset = tmp_path / "faketime.offset"
    offset.write_text("+0\n", encoding="ascii")
    env = {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_CACHE_DURATION": "1",  # the offset file is read at most once a second
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    audit = tmp_path / "audit.jsonl"
    figures: dict[str, object] = {}
    with ThreadedPageServer(page_with(rate(0))) as source, ThreadedPageServer("ok") as slack:
        slack.route(SLACK_PATH, Reply(200, body=b"ok"))
        config = write_config(
            tmp_path,
            source.url,
            Sinks(slack_url=slack.url_for(SLACK_PATH), slack_min_interval="0"),
            delivery='backoff_initial = "1s"\nbackoff_max = "2s"\n',
        )
        with DaemonProcess(config, env=env) as daemon:

            def checks() -> int:
                return len(daemon.events_named("check_done"))

            def step(to: str, n: int) -> None:
                """Set the offset; two checks follow within WINDOW; change ``n`` reaches the file."""
                done = checks()
                offset.write_text(f"{to}\n", encoding="ascii")
                stepped = time.monotonic()
                assert wait_for(lambda: checks() >= done + 2, timeout=WINDOW), to
                figures[f"{to}: two checks after"] = round(time.monotonic() - stepped, 2)
                source.set_page(page_with(rate(n)))
                assert wait_for(lambda: len(file_messages(audit)) == n, timeout=6), to

            assert daemon.wait_log("check_done", timeout=30)
            step("-90", 1)  # back 90 s

            # back an hour while a Slack retry is due in 3 s (Retry-After)
            assert wait_for(lambda: len(slack.requests) == 1, timeout=10)  # change 1 is in
            slack.script(Reply(503, body=b"busy", headers=[("Retry-After", "3")]))
            source.set_page(page_with(rate(2)))
            assert wait_for(lambda: len(slack.requests) == 2, timeout=10)  # change 2: a 503
            offset.write_text("-3690\n", encoding="ascii")
            stepped = time.monotonic()
            assert wait_for(lambda: len(slack.requests) == 3, timeout=10)  # not in an hour
            figures["-3690: the Slack retry came after"] = round(time.monotonic() - stepped, 2)
            assert daemon.wait_log("clock_stepped", timeout=5)
            step("-3690", 3)  # (already there) checks go on

            step("+0", 4)  # forward an hour
            step("+7200", 5)  # forward two more
            assert wait_for(lambda: len(slack.requests) == 6, timeout=10)
            assert daemon.terminate() == 0
            assert log_problems(daemon.logs()) == []
    got = [(e.old, e.new) for m in slack_messages(slack.requests) for e in m]
    assert dict.fromkeys(got) == dict.fromkeys((rate(i), rate(i + 1)) for i in range(5))
    record("clock_steps", **figures)
