"""Three instances on one PostgreSQL database, SIGKILLed one after another while rates move.

Three real daemon processes share a fresh schema of the server named by
``MONITOR_TEST_POSTGRES_DSN`` (the case skips without it), one page server on 127.0.0.1 (six
targets, one path each, every second) and one Slack stand-in. Every target's rate moves every
1.5 s. Once the instances have shared the targets, the test SIGKILLs one, later a second, and
lets the third finish. Then:

- every change a check committed reached Slack, and each target's alerts form one unbroken chain
  of old → new values up to the last rate (values the page showed while no instance could see
  it are not changes anybody detected);
- duplicates only in the documented window (a message in flight at a kill: at most one per
  kill), each event with one dedup id;
- no target was checked twice in one interval (the page server's requests per target are at
  least the interval apart, less the slack ``monitor.cluster.spacing`` allows and a little
  request latency);
- after each kill the dead instance's targets were checked again within the takeover window
  (1.5 leases).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import urllib.error
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess, free_port, scrape, wait_for
from tests.reliability.conftest import (
    SLACK_PATH,
    SOURCE_TOKEN,
    Sinks,
    leaks,
    log_problems,
    page_with,
    rate,
    record,
    write_config,
)
from tests.servers import Reply, Request, ThreadedPageServer
from tests.store_backends import postgres_dsn, with_search_path

pytestmark = pytest.mark.postgres

TARGETS = ["timesca", *(f"t{n}" for n in range(1, 6))]
LEASE = 4.0
#: 1.5 leases: the dead instance's leases lapse, then a survivor's next heartbeats take them
TAKEOVER = 1.5 * LEASE
INTERVAL = 1.0
#: monitor.cluster.spacing for a 1 s interval without jitter, less what request latency and a
#: loaded machine may add between a check's start and its request reaching the server
MIN_GAP = 0.9 - 0.15
CHANGE_EVERY = 1.5
BODY = "chain $target $pair $old_rate to $new_rate id $dedup_id"
_LINE = re.compile(r"chain (\S+) (\S+) (\S+) to (\S+) id ([0-9a-f]{8})")


@dataclass(frozen=True)
class Alert:
    target: str
    old: str
    new: str
    dedup_id: str


class Pages:
    """Each target's page at its own path; its rate moves when the test says."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.step = 0

    def advance(self) -> None:
        with self._lock:
            self.step += 1

    def __call__(self, request: Request) -> Reply:
        with self._lock:
            step = self.step
        body = page_with(rate(step)).encode()
        return Reply(200, body=body, headers=[("Content-Type", "text/html; charset=utf-8")])


@contextmanager
def schema(dsn: str) -> Iterator[str]:
    """A fresh schema on the server, dropped after; the DSN that works in it."""
    import psycopg  # noqa: PLC0415 -- only with a server

    name = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield with_search_path(dsn, name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def outbox(dsn: str) -> list[tuple[str, str, str]]:
    """(sink, status, short dedup id) of every outbox row."""
    import psycopg  # noqa: PLC0415 -- only with a server

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT sink, status, dedup_key FROM outbox ORDER BY id").fetchall()
    return [(str(s), str(st), str(k)[:8]) for s, st, k in rows]


def slack_alerts(requests: list[Request]) -> list[list[Alert]]:
    """Each POST Slack got, as its alerts."""
    out = []
    for request in requests:
        payload = json.loads(request.body)
        text = " ".join(b["text"]["text"] for b in payload["blocks"] if b["type"] == "section")
        out.append([Alert(t, old, new, i) for t, _, old, new, i in _LINE.findall(text)])
    return out


def readyz(port: int) -> dict[str, Any]:
    """/readyz's body, 200 or 503 (it names what the instance holds either way)."""
    try:
        return dict(json.loads(scrape(port, "/readyz")))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read().decode()))
    except OSError:
        return {}


def config_for(workdir: Path, base: str, slack: str, port: int) -> Path:
    """The instance's monitor.toml: six targets every second, Slack, a short cluster lease."""
    workdir.mkdir()
    more = "".join(
        f'[[targets]]\nname = "{t}"\nurl = "{base}{t}?key={SOURCE_TOKEN}"\n'
        'interval = "1s"\njitter = 0\n\n'
        for t in TARGETS[1:]
    )
    return write_config(
        workdir,
        f"{base}{TARGETS[0]}",
        Sinks(slack_url=slack, slack_min_interval="0", slack_timeout="3s", body=BODY),
        delivery='lease = "3s"\nbackoff_initial = "200ms"\nbackoff_max = "1s"',
        listen=f"127.0.0.1:{port}",
        extra=f'[cluster]\nlease = "{LEASE:g}s"\n\n{more}',
    )


def request_times(requests: list[Request]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {t: [] for t in TARGETS}
    for r in requests:
        times[r.path.strip("/")].append(r.at)
    return times


def test_three_instances_lose_two_to_sigkill_and_every_change_arrives_once_per_check(
    tmp_path: Path,
) -> None:
    server_dsn = postgres_dsn()  # skips, saying how to get a server, without one
    pages = Pages()
    changing = threading.Event()
    done = threading.Event()

    def mover() -> None:
        while not done.wait(CHANGE_EVERY):
            if changing.is_set():
                pages.advance()

    with (
        schema(server_dsn) as dsn,
        ThreadedPageServer("") as source,
        ThreadedPageServer("ok") as slack,
    ):
        for t in TARGETS:
            source.route(f"/{t}", pages)
        slack.route(SLACK_PATH, Reply(200, body=b"ok"))
        ports = [free_port() for _ in range(3)]
        configs = [
            config_for(tmp_path / f"i{n}", source.url, slack.url_for(SLACK_PATH), port)
            for n, port in enumerate(ports)
        ]
        env = {"MONITOR_MONITOR__DATABASE": dsn}
        thread = threading.Thread(target=mover, daemon=True)
        thread.start()
        daemons = [DaemonProcess(c, env=env) for c in configs]
        try:
            # the three share the six targets, and every one has its baseline
            def shared() -> bool:
                held = [readyz(p).get("holds", []) for p in ports]
                return all(len(h) == 2 for h in held) and all(
                    request_times(source.requests)[t] for t in TARGETS
                )

            assert wait_for(shared, timeout=40, every=0.2), [readyz(p) for p in ports]
            changing.set()
            resumed: list[float] = []
            for victim in (0, 1):
                time.sleep(6)
                lost = readyz(ports[victim])["holds"]
                daemons[victim].kill()
                killed = time.monotonic()

                def checked_again(lost: list[str] = lost, killed: float = killed) -> bool:
                    times = request_times(source.requests)
                    return all(any(at > killed for at in times[t]) for t in lost)

                assert wait_for(checked_again, timeout=TAKEOVER + 10), lost
                times = request_times(source.requests)
                resumed.append(max(min(a for a in times[t] if a > killed) - killed for t in lost))
            time.sleep(6)
            changing.clear()
            final = rate(pages.step)
            survivor = daemons[2]

            def delivered() -> bool:
                rows = outbox(dsn)
                got = {a.target: a.new for m in slack_alerts(slack.requests) for a in m}
                return all(got.get(t) == final for t in TARGETS) and all(
                    status == "sent" for _, status, _ in rows
                )

            assert wait_for(delivered, timeout=20), final
            status = scrape(ports[2], "/api/status", tmp_path)
            metrics = scrape(ports[2], "/metrics", tmp_path)
            assert survivor.terminate() == 0
        finally:
            done.set()
            for d in daemons:
                if d.proc.poll() is None:
                    d.kill()
        rows = outbox(dsn)
    entries = [e for d in daemons for e in d.logs()]

    # every change a check committed reached Slack: one unbroken chain per target, to the end
    posts = slack_alerts(slack.requests)
    seen: dict[tuple[str, str, str], set[str]] = {}
    duplicate_posts = 0
    for post in posts:
        keys = {(a.target, a.old, a.new) for a in post}
        duplicate_posts += bool(keys & seen.keys())
        for a in post:
            seen.setdefault((a.target, a.old, a.new), set()).add(a.dedup_id)
    assert {(s, status) for s, status, _ in rows} == {("slack", "sent"), ("audit", "sent")}
    assert {i for s, _, i in rows if s == "slack"} == {i for ids in seen.values() for i in ids}
    for t in TARGETS:
        moves = sorted(((o, n) for (tt, o, n) in seen if tt == t), key=lambda m: m[0])
        assert moves[0][0] == rate(0), t
        for (_, new), (old, _) in itertools.pairwise(moves):
            assert new == old, (t, moves)
        assert moves[-1][1] == final, t
    # duplicates only in the window of a kill, each event with one dedup id
    assert duplicate_posts <= 2, posts
    assert all(len(ids) == 1 for ids in seen.values()), seen
    # no target checked twice in one interval; checks resumed within the takeover window
    gaps = {
        t: min(b - a for a, b in itertools.pairwise(ts))
        for t, ts in request_times(source.requests).items()
    }
    assert min(gaps.values()) >= MIN_GAP, gaps
    assert max(resumed) <= TAKEOVER + 1.0, resumed
    # what the survivor shows: itself, its targets, the members; never the database's URL
    cluster = json.loads(status)["cluster"]
    assert sorted(cluster["held"]) == sorted(TARGETS)
    assert [(m["id"] == cluster["me"], m["alive"]) for m in cluster["members"]].count(
        (True, True)
    ) == 1
    assert f'ticker_monitor_instance_info{{member="{cluster["me"]}"}} 1.0' in metrics
    assert 'ticker_monitor_cluster_target_held{target="timesca"} 1.0' in metrics
    assert leaks(tmp_path, [dsn, server_dsn]) == []
    assert log_problems(entries) == []
    record(
        "cluster_failover",
        instances=3,
        kills=2,
        changes=pages.step,
        alerts=len(seen),
        posts=len(posts),
        duplicate_posts=duplicate_posts,
        resumed_s=[round(r, 2) for r in resumed],
        min_gap_s=round(min(gaps.values()), 3),
    )
