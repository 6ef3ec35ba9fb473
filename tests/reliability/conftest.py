"""What every reliability case shares: its configuration, its receivers and the secret grep.

Each case starts the real daemon as a process (``tests.daemon_harness.DaemonProcess``) against
real servers on 127.0.0.1: the page server (``tests.servers``), a Slack stand-in (the same server,
recording each POST), aiosmtpd (``tests.receivers.ThreadedSmtpReceiver``) and file sinks. Every
configuration carries the secrets below; after each case, :func:`secrets_never_leak` greps every
file the case left in its directory (daemon logs, command output, scraped ``/metrics`` and
``/healthz``, the alerts the file sinks wrote, the SQLite database) for each of them.

Messages are rendered with :data:`BODY`, so that what Slack and the mailbox got can be read back
exactly (``chain TMT/USD 1.00001 to 1.00002 id 0a1b2c3d``), whatever the default wording.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import page
from tests.daemon_harness import write_config as harness_config
from tests.receivers import Mail
from tests.servers import Request

#: the Slack webhook's path: the credential
SLACK_PATH = "/services/T0RELIAB1/B0RELIAB2/relSlackTok9Qz"
SMTP_USER = "monitor"
SMTP_PASSWORD = "rel-smtp-pw-4Kx7"
#: a token in the page's URL (a query parameter): never logged, never in an alert
SOURCE_TOKEN = "relSrcToken3Mv8"
#: what the grep looks for: each secret, and the Slack token alone (a log could cut the path)
NEEDLES = (SLACK_PATH, SLACK_PATH.rsplit("/", 1)[1], SMTP_PASSWORD, SOURCE_TOKEN)

#: every sink renders each event as this line (Slack escapes ">", so: "to")
BODY = "chain $pair $old_rate to $new_rate id $dedup_id"
_LINE = re.compile(r"chain (\S+) (\S+) to (\S+) id ([0-9a-f]{8})")

#: files that hold the secrets on purpose
_CARRIERS = frozenset({"monitor.toml"})


def page_with(rate: str) -> str:
    """The seed marquee with TMT/USD at ``rate`` (and its change % at 0)."""
    return page({"TMT/USD": (rate, "0")})


def rate(n: int) -> str:
    """The n-th value of a rate that moves by 0.00001 each step (never a jump)."""
    return f"{1 + n / 100000:.5f}"


@dataclass(frozen=True)
class Sinks:
    """Which sinks a case's configuration has (a file sink ``audit`` always)."""

    slack_url: str | None = None
    smtp_port: int | None = None
    smtp_password: str = SMTP_PASSWORD
    smtp_tls: str = "none"
    slack_timeout: str = "3s"
    email_timeout: str = "5s"
    slack_min_interval: str = "1s"
    #: every sink's ``body_template``
    body: str = BODY


def write_config(
    workdir: Path,
    page_url: str,
    sinks: Sinks,
    *,
    interval: str = "1s",
    target: str = "",
    delivery: str = "",
    monitor: str = "",
    listen: str = "",
    extra: str = "",
    database: Path | None = None,
    grace: str = "5s",
) -> Path:
    """The case's ``monitor.toml`` (``tests.daemon_harness.write_config`` with the product's
    defaults for retries and delivery): one target, its URL carrying :data:`SOURCE_TOKEN`, one
    rule routing everything to every sink."""
    names = ["audit"]
    tables = ""
    if sinks.slack_url is not None:
        names.append("slack")
        tables += (
            f'[sinks.slack]\ntype = "slack"\nwebhook_url = "{sinks.slack_url}"\n'
            f'body_template = "{sinks.body}"\ntimeout = "{sinks.slack_timeout}"\n'
            f'min_interval = "{sinks.slack_min_interval}"\n'
        )
    if sinks.smtp_port is not None:
        names.append("mail")
        tables += (
            f'[sinks.mail]\ntype = "email"\nhost = "127.0.0.1"\nport = {sinks.smtp_port}\n'
            f'tls = "{sinks.smtp_tls}"\nusername = "{SMTP_USER}"\n'
            f'password = "{sinks.smtp_password}"\nfrom = "monitor@example.org"\n'
            f'to = ["ops@example.org"]\nbody_template = "{sinks.body}"\n'
            f'timeout = "{sinks.email_timeout}"\n'
        )
    separator = "&" if "?" in page_url else "?"
    return harness_config(
        workdir,
        f"{page_url}{separator}key={SOURCE_TOKEN}",
        interval=interval,
        sinks=names,
        extra=tables + extra,
        listen=listen,
        retries=None,
        target_extra=target,
        delivery=delivery,
        monitor=monitor,
        database=database,
        grace=grace,
        file_sink_extra=f'body_template = "{sinks.body}"',
    )


# --- what arrived ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One event as a sink delivered it."""

    pair: str
    old: str
    new: str
    dedup_id: str


def lines_in(text: str) -> list[Line]:
    return [Line(*m.groups()) for m in _LINE.finditer(text)]


def slack_messages(requests: Sequence[Request]) -> list[list[Line]]:
    """Each POST Slack accepted, as its events (one per section block)."""
    out = []
    for request in requests:
        payload = json.loads(request.body)
        sections = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]
        out.append([line for text in sections for line in lines_in(text)])
    return out


def mail_messages(mails: Sequence[Mail]) -> list[list[Line]]:
    """Each accepted mail, as the events of its text part."""
    out = []
    for mail in mails:
        msg = message_from_bytes(mail.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        body = msg.get_body(preferencelist=("plain",))
        assert body is not None
        out.append(lines_in(body.get_content()))
    return out


def file_messages(path: Path) -> list[list[Line]]:
    """Each line the file sink appended (one per event)."""
    if not path.exists():
        return []
    records = [json.loads(raw) for raw in path.read_text(encoding="utf-8").splitlines() if raw]
    return [lines_in(r["message"]) for r in records]


def duplicates(messages: Sequence[Sequence[Line]]) -> int:
    """Messages that carried an event some earlier message carried already."""
    seen: set[tuple[str, str, str]] = set()
    count = 0
    for message in messages:
        keys = {(line.pair, line.old, line.new) for line in message}
        if keys & seen:
            count += 1
        seen |= keys
    return count


def chain(messages: Sequence[Sequence[Line]]) -> list[Line]:
    """The distinct events in the order they first arrived."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for message in messages:
        for line in message:
            key = (line.pair, line.old, line.new)
            if key not in seen:
                seen.add(key)
                out.append(line)
    return out


def dedup_ids_per_event(messages: Sequence[Sequence[Line]]) -> dict[tuple[str, str], set[str]]:
    ids: dict[tuple[str, str], set[str]] = {}
    for message in messages:
        for line in message:
            ids.setdefault((line.old, line.new), set()).add(line.dedup_id)
    return ids


def require(available: bool, reason: str) -> None:
    """Skip the case when the machine lacks what it needs, with the reason; in CI
    (``RELIABILITY_REQUIRE=1``, set by ``.ci/run``) fail instead, so nothing is skipped there."""
    if available:
        return
    if os.environ.get("RELIABILITY_REQUIRE") == "1":
        pytest.fail(f"RELIABILITY_REQUIRE=1 but {reason}")
    pytest.skip(reason)


def record(case: str, **figures: object) -> None:
    """Keep a case's figures: printed (``pytest -s``) and appended as one JSON line to the file
    named by ``RELIABILITY_REPORT`` (``make reliability`` sets it), for docs/reliability.md."""
    line = json.dumps({"case": case, **figures}, sort_keys=False)
    print(f"\nreliability: {line}")
    report = os.environ.get("RELIABILITY_REPORT")
    if report:
        with Path(report).open("a", encoding="utf-8") as f:
            f.write(line + "\n")


@dataclass(frozen=True)
class IoFault:
    """The LD_PRELOAD shim of ``iofault.c``: ``env(prefix)`` for the daemon, then ``fail(errno)``
    and ``heal()`` from the test."""

    library: Path
    control: Path

    def env(self, prefix: Path) -> dict[str, str]:
        return {
            "LD_PRELOAD": str(self.library),
            "IOFAULT_CONTROL": str(self.control),
            "IOFAULT_PREFIX": str(prefix),
        }

    def fail(self, code: int) -> None:
        self.control.write_text(str(code), encoding="ascii")

    def heal(self) -> None:
        self.control.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def iofault_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    require(cc is not None, "no C compiler (cc) to build the I/O fault shim")
    assert cc is not None
    out = tmp_path_factory.mktemp("iofault") / "iofault.so"
    source = Path(__file__).with_name("iofault.c")
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O2", "-o", str(out), str(source), "-ldl"],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture
def iofault(iofault_library: Path, tmp_path: Path) -> Iterator[IoFault]:
    fault = IoFault(iofault_library, tmp_path / "iofault.control")
    yield fault
    fault.heal()


# --- the secret grep -------------------------------------------------------------------------


def leaks(directory: Path, secrets: Sequence[str] = NEEDLES) -> list[str]:
    """Where any of ``secrets`` appears in the files under ``directory``, but for the
    configuration that holds them on purpose."""
    found = []
    for file in sorted(p for p in directory.rglob("*") if p.is_file()):
        if file.name in _CARRIERS:
            continue
        data = file.read_bytes()
        for needle in secrets:
            at = data.find(needle.encode())
            if at != -1:
                context = data[max(0, at - 60) : at + 60].decode("utf-8", "replace")
                found.append(f"{file.name}: {needle!r} in ...{context}...")
    return found


@pytest.fixture(autouse=True)
def secrets_never_leak(tmp_path: Path) -> Iterator[None]:
    """After every case: no secret in any log, error, metric, command output or alert it left."""
    yield
    assert leaks(tmp_path) == []


def log_problems(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Log lines that look like a bug: tracebacks, errors from our code, non-JSON output."""
    return [
        e
        for e in entries
        if "exception" in e or e.get("event") == "_raw" or e.get("level") == "critical"
    ]
