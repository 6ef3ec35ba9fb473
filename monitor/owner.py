"""Who claims outbox rows: one life of one process, and whether an earlier life is over.

An owner reads ``host/pid/boot/start``: the host name, the process id, the first 8 characters of
the kernel's boot id (``/proc/sys/kernel/random/boot_id``) and the process's start time in clock
ticks since boot (field 22 of ``/proc/PID/stat``). The host is the identity that survives
restarts; pid, boot and start tell one life of it from another, even when a container gives every
life pid 1.

At start the daemon releases at once every lease held by an owner of *this* host that is over
(:func:`is_dead`): its own previous life after a SIGKILL, an OOM kill or a power cut, or a killed
``run --once``. A restart then sends at once instead of waiting out ``[delivery].lease``. Leases of
other hosts are never judged: they lapse after the lease and another instance takes over, as
before. Where ``/proc`` is missing (not Linux), a life is over when its pid is gone.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Owner", "is_dead", "this_process"]

_PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class Owner:
    host: str
    pid: int
    #: the boot id's first 8 characters ("" where unknown)
    boot: str
    #: the process's start time in clock ticks since boot ("" where unknown)
    start: str

    def __str__(self) -> str:
        return f"{self.host}/{self.pid}/{self.boot}/{self.start}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        """An owner written by :meth:`__str__`; None for anything else (an older format)."""
        parts = text.split("/")
        if len(parts) != 4 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2], parts[3])


def _boot_id(proc: Path) -> str:
    try:
        return (proc / "sys/kernel/random/boot_id").read_text(encoding="ascii").strip()[:8]
    except OSError:
        return ""


def _stat(proc: Path, pid: int) -> tuple[str, str] | None:
    """(state, start time) of a running process from ``/proc/PID/stat``; None if it is gone."""
    try:
        text = (proc / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    except OSError:
        return ("?", "")
    # "pid (comm) state ..." -- comm may hold spaces and parentheses: split after the last ")"
    fields = text[text.rfind(")") + 2 :].split()
    return (fields[0], fields[19]) if len(fields) > 19 else ("?", "")


def this_process(proc: Path = _PROC) -> Owner:
    """This process's owner name."""
    pid = os.getpid()
    stat = _stat(proc, pid)
    return Owner(socket.gethostname(), pid, _boot_id(proc), stat[1] if stat else "")


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, under another user
        return False
    return False


def is_dead(owner: str, *, me: Owner, proc: Path = _PROC) -> bool:
    """Is ``owner`` a life of this host that is over? False when it cannot be told (another host,
    an unknown format) and for ``me``."""
    other = Owner.parse(owner)
    if other is None or other.host != me.host or other == me:
        return False
    if me.boot and other.boot and other.boot != me.boot:
        return True  # the machine rebooted since: every process of that boot is gone
    if not other.start:
        return _pid_gone(other.pid)
    stat = _stat(proc, other.pid)
    if stat is None:
        return True
    state, start = stat
    return state in ("Z", "X") or (bool(start) and start != other.start)
