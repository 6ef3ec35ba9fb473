"""The commands against a database two running instances share (PostgreSQL).

Two real daemons split two targets; the commands run as users run them, as processes on the same
database (``MONITOR_MONITOR__DATABASE``): a silence added from the command line is honoured by
whichever instance checks its target; a dead letter re-queued with ``alerts retry`` is delivered
by one of them, once; ``alerts``, ``history``, ``silence list|expire`` and ``status`` read what
both wrote, and ``status`` shows the members with their heartbeats and who checks what.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess, free_port, run_cli, wait_for, write_config
from tests.reliability.conftest import log_problems, page_with, rate
from tests.reliability.test_cluster_failover import readyz, schema
from tests.servers import Reply, Request, ThreadedPageServer
from tests.store_backends import postgres_dsn

pytestmark = pytest.mark.postgres

TEAM = "/services/T0TEAM001/B0TEAM002/teamTok8Hq"
BROKEN = "/services/T0BRKN001/B0BRKN002/brknTok5Jz"
BODY = "chain $target $old_rate to $new_rate id $dedup_id"
_LINE = re.compile(r"chain (\S+) (\S+) to (\S+) id ([0-9a-f]{8})")


class Pages:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.steps = {"timesca": 0, "other": 0}

    def advance(self) -> None:
        with self._lock:
            self.steps = {t: n + 1 for t, n in self.steps.items()}

    def __call__(self, request: Request) -> Reply:
        with self._lock:
            step = self.steps[request.path.strip("/")]
        body = page_with(rate(step)).encode()
        return Reply(200, body=body, headers=[("Content-Type", "text/html; charset=utf-8")])


class Receiver:
    """The Slack stand-in for one webhook: answers ``status`` (until changed), keeps the posts
    it accepted."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.accepted: list[Request] = []

    def __call__(self, request: Request) -> Reply:
        if self.status != 200:
            return Reply(self.status, body=b"invalid_payload")
        self.accepted.append(request)
        return Reply(200, body=b"ok")

    def lines(self) -> list[tuple[str, str, str, str]]:
        """(target, old, new, dedup id) of every alert it accepted, in order."""
        out = []
        for r in self.accepted:
            sections = json.loads(r.body)["blocks"]
            text = " ".join(b["text"]["text"] for b in sections if b["type"] == "section")
            out += _LINE.findall(text)
        return out


def config_for(workdir: Path, base: str, slack: str, listen: str) -> Path:
    workdir.mkdir()
    sink = '[sinks.{name}]\ntype = "slack"\nwebhook_url = "{url}"\nmin_interval = "0"\n'
    sink += f'timeout = "3s"\nbody_template = "{BODY}"\n\n'
    extra = (
        sink.format(name="team", url=f"{slack}{TEAM.lstrip('/')}")
        + sink.format(name="broken", url=f"{slack}{BROKEN.lstrip('/')}")
        + '[cluster]\nlease = "4s"\n\n'
        + f'[[targets]]\nname = "other"\nurl = "{base}other"\ninterval = "1s"\njitter = 0\n'
    )
    return write_config(
        workdir,
        f"{base}timesca",
        sinks=("team", "broken"),
        extra=extra,
        listen=listen,
        delivery='lease = "3s"\nbackoff_initial = "200ms"\nbackoff_max = "1s"\n',
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_silences_retries_and_every_command_work_on_the_database_two_instances_share(
    tmp_path: Path,
) -> None:
    server_dsn = postgres_dsn()  # skips, saying how to get a server, without one
    pages = Pages()
    broken, team = Receiver(400), Receiver(200)
    with (
        schema(server_dsn) as dsn,
        ThreadedPageServer("") as source,
        ThreadedPageServer("ok") as slack,
    ):
        for t in ("timesca", "other"):
            source.route(f"/{t}", pages)
        slack.route(TEAM, team)
        slack.route(BROKEN, broken)
        env = {"MONITOR_MONITOR__DATABASE": dsn}
        ports = [free_port(), free_port()]
        configs = [
            config_for(tmp_path / f"i{n}", source.url, slack.url, f"127.0.0.1:{port}")
            for n, port in enumerate(ports)
        ]
        # the commands' own configuration: no endpoint, so `status` reads the database
        commands = config_for(tmp_path / "ops", source.url, slack.url, "")

        def cli(*args: str) -> str:
            done = run_cli(commands, *args, env=env)
            assert done.returncode == 0, (args, done.stdout, done.stderr)
            return done.stdout

        daemons = [DaemonProcess(c, env=env) for c in configs]
        try:
            assert wait_for(
                lambda: (
                    sorted(t for p in ports for t in readyz(p).get("holds", []))
                    == ["other", "timesca"]
                    and all(len(readyz(p).get("holds", [])) == 1 for p in ports)
                    and len(source.requests) >= 4
                ),
                timeout=40,
                every=0.2,
            ), [readyz(p) for p in ports]
            sid = cli("silence", "add", "--target", "timesca", "--for", "1h", "--comment", "mw")
            sid = sid.strip()
            time.sleep(1.5)  # both instances' next checks see it (each reads it with the state)
            pages.advance()

            # the silenced target's alert is recorded, never sent; the other one goes to team
            def settled() -> bool:
                rows = json_lines(cli("alerts", "--json"))
                return {(r["target"], r["sink"], r["status"]) for r in rows} == {
                    ("timesca", "team", "silenced"),
                    ("timesca", "broken", "silenced"),
                    ("other", "team", "sent"),
                    ("other", "broken", "dead"),
                }

            assert wait_for(settled, timeout=20), cli("alerts")
            assert team.lines() == [("other", rate(0), rate(1), team.lines()[0][3])]
            (listed,) = json_lines(cli("silence", "list", "--json"))
            assert (listed["id"], listed["target"], listed["comment"]) == (sid, "timesca", "mw")

            # a dead letter re-queued from the command line is delivered once, by one of them
            (dead,) = json_lines(cli("alerts", "--status", "dead", "--json"))
            broken.status = 200
            cli("alerts", "retry", dead["dedup_id"])
            assert wait_for(lambda: len(broken.lines()) == 1, timeout=40)
            assert broken.lines()[0][:3] == ("other", rate(0), rate(1))
            assert broken.lines()[0][3] == dead["dedup_id"]

            # once the silence ends, the next move alerts everywhere
            cli("silence", "expire", sid)
            time.sleep(1.5)
            pages.advance()
            assert wait_for(
                lambda: ("timesca", rate(1), rate(2)) in [x[:3] for x in team.lines()],
                timeout=20,
            )

            # history and status read what both instances wrote (the alert above is timesca's:
            # the other target's check of the new page may come a moment later)
            def both_seen() -> bool:
                history = json_lines(cli("history", "--format", "json"))
                return {(h["target"], h["rate"]) for h in history} >= {
                    ("timesca", rate(2)),
                    ("other", rate(2)),
                }

            assert wait_for(both_seen, timeout=20), cli("history")
            status = json.loads(cli("status", "--json"))
            cluster = status["cluster"]
            assert cluster["me"] == ""  # drawn from the database by a command
            assert len(cluster["members"]) == 2
            assert all(m["alive"] for m in cluster["members"])
            owners = {t["name"]: t["checked_by"] for t in status["targets"]}
            assert set(owners.values()) == {m["id"] for m in cluster["members"]}
            text = cli("status")
            assert "cluster (shared store, lease 4s): 2 member(s)" in text
            assert all(f"checked by {o}" in text for o in owners.values())
            time.sleep(1)
            retried = [x for x in broken.lines() if x[3] == dead["dedup_id"]]
            assert len(retried) == 1  # once, not by both
            for d in daemons:
                assert d.terminate() == 0
        finally:
            for d in daemons:
                if d.proc.poll() is None:
                    d.kill()
    assert log_problems([e for d in daemons for e in d.logs()]) == []
