"""Lease owners: one life of one process, and telling whether an earlier life is over."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from monitor.owner import Owner, is_dead, this_process

BOOT = "34082ca9-c17d-44e0-8246-1ca918b2996e"


def fake_proc(root: Path, processes: dict[int, tuple[str, str]], boot: str = BOOT) -> Path:
    """A /proc with a boot id and ``pid: (state, start time)`` entries (comm with a space and
    parentheses, as a process may name itself)."""
    (root / "sys/kernel/random").mkdir(parents=True)
    (root / "sys/kernel/random/boot_id").write_text(boot + "\n")
    for pid, (state, start) in processes.items():
        (root / str(pid)).mkdir()
        rest = " ".join(["0"] * 18)
        (root / str(pid) / "stat").write_text(f"{pid} (python (x) y) {state} {rest} {start} 0 0\n")
    return root


def test_this_process_is_named_by_host_pid_boot_and_start_time(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {})
    me = this_process(proc)
    assert me.boot == BOOT[:8]
    assert Owner.parse(str(me)) == me
    real = this_process()
    assert real.start.isdigit()  # Linux: the start time from /proc/self/stat
    assert Owner.parse("host:1234") is None  # the old format is not judged


def test_a_life_is_over_when_its_pid_is_gone_reused_a_zombie_or_of_another_boot(
    tmp_path: Path,
) -> None:
    proc = fake_proc(tmp_path, {10: ("S", "500"), 11: ("S", "999"), 12: ("Z", "700")})
    me = Owner("vm", 10, BOOT[:8], "500")
    assert not is_dead(str(me), me=me, proc=proc)  # never me
    assert is_dead(f"vm/13/{BOOT[:8]}/600", me=me, proc=proc)  # gone
    assert is_dead(f"vm/11/{BOOT[:8]}/600", me=me, proc=proc)  # pid reused by another process
    assert is_dead(f"vm/12/{BOOT[:8]}/700", me=me, proc=proc)  # a zombie
    assert is_dead("vm/11/deadbeef/999", me=me, proc=proc)  # before the last reboot
    assert not is_dead(f"vm/11/{BOOT[:8]}/999", me=me, proc=proc)  # alive
    assert not is_dead(f"other-host/13/{BOOT[:8]}/600", me=me, proc=proc)  # not ours to judge
    assert not is_dead("vm:13", me=me, proc=proc)  # an unknown format is not judged


def test_a_real_process_is_alive_until_it_ends() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    try:
        start = (Path("/proc") / str(child.pid) / "stat").read_text().rsplit(")", 1)[1].split()[19]
        me = this_process()
        owner = f"{me.host}/{child.pid}/{me.boot}/{start}"
        assert not is_dead(owner, me=me)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
    assert is_dead(owner, me=me)
