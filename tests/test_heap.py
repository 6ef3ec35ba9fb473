"""The daemon's collector policy (``monitor.heap.CollectorPolicy``): each tick freezes what
lives, a thaw is due at the first tick and every ``thaw_every`` seconds after; against a fake of
the ``gc`` module, then the real collector in a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field

from monitor.heap import CollectorPolicy


@dataclass
class FakeCollector:
    enabled: bool = True
    calls: list[str] = field(default_factory=list)

    def isenabled(self) -> bool:
        return self.enabled

    def collect(self) -> int:
        self.calls.append("collect")
        return 3

    def freeze(self) -> None:
        self.calls.append("freeze")

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")

    def get_freeze_count(self) -> int:
        return 7


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


THAW = ["unfreeze", "collect", "freeze"]


def test_the_first_tick_thaws_the_next_freeze_until_a_thaw_is_due() -> None:
    gc, clock = FakeCollector(), Clock()
    policy = CollectorPolicy(clock=clock, thaw_every=3600, collector=gc)
    policy.tick()
    assert gc.calls == THAW
    for _ in range(59):
        clock.now += 60
        gc.calls.clear()
        policy.tick()
        assert gc.calls == ["freeze"]
    clock.now += 60  # 3,600 s after the first thaw
    gc.calls.clear()
    policy.tick()
    assert gc.calls == THAW
    clock.now += 3599
    gc.calls.clear()
    policy.tick()
    assert gc.calls == ["freeze"]


def test_a_disabled_collector_is_left_alone() -> None:
    gc = FakeCollector(enabled=False)
    policy = CollectorPolicy(clock=Clock(), collector=gc)
    policy.tick()
    policy.stop()
    assert gc.calls == []


def test_stop_thaws_once_after_a_tick_and_later_ticks_do_nothing() -> None:
    gc = FakeCollector()
    policy = CollectorPolicy(clock=Clock(), collector=gc)
    policy.tick()
    gc.calls.clear()
    policy.stop()
    policy.stop()
    assert gc.calls == ["unfreeze"]
    gc.calls.clear()
    policy.tick()  # a housekeeping that was still running when the daemon stopped
    assert gc.calls == []


def test_stop_before_any_tick_has_nothing_to_thaw() -> None:
    gc = FakeCollector()
    policy = CollectorPolicy(clock=Clock(), collector=gc)
    policy.stop()
    policy.tick()
    assert gc.calls == []


#: the real collector: a cycle frozen by a tick waits for the thaw; a plain object frozen is
#: freed when its last reference goes; a full collection after a tick walks only what is new
SCRIPT = """
import gc, json, weakref
from monitor.heap import CollectorPolicy

class Node:
    pass

clock = [0.0]
policy = CollectorPolicy(clock=lambda: clock[0], thaw_every=3600)
seen = {}
policy.tick()
seen["frozen_after_first"] = gc.get_freeze_count()
seen["young_after_first"] = sum(gc.get_count())

a, b, plain = Node(), Node(), Node()
a.peer, b.peer = b, a
cycle, single = weakref.ref(a), weakref.ref(plain)
clock[0] = 60.0
policy.tick()  # freezes the cycle and the plain object
del a, b
del plain
seen["plain_freed_at_once"] = single() is None
gc.collect()
seen["cycle_kept_while_frozen"] = cycle() is not None
clock[0] = 3600.0
policy.tick()  # the thaw
seen["cycle_freed_by_thaw"] = cycle() is None
seen["frozen_after_thaw"] = gc.get_freeze_count()
policy.stop()
seen["frozen_after_stop"] = gc.get_freeze_count()
print(json.dumps(seen))
"""


def test_the_real_collector_frees_frozen_cycles_at_the_thaw() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])  # after the policy's log lines
    assert seen["frozen_after_first"] > 1000  # the modules imported: classes, functions ...
    assert seen["young_after_first"] < 50
    assert seen["plain_freed_at_once"] is True
    assert seen["cycle_kept_while_frozen"] is True
    assert seen["cycle_freed_by_thaw"] is True
    assert seen["frozen_after_thaw"] > 1000
    assert seen["frozen_after_stop"] == 0
