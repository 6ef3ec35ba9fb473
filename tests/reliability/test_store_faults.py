"""Store faults: a locked, read-only or full database loses no change and heals without a restart.

Each case makes a change on the page while the store cannot be written, then lifts the fault and
asserts that the change arrives within seconds, that each failure was logged as one warning with
the error (no traceback) and counted in ``ticker_monitor_store_errors_total``.

The lock is a second SQLite connection holding ``BEGIN IMMEDIATE`` (shorter and longer than the
store's 5 s busy timeout). A full disk is a 4 MB tmpfs mounted for the case and filled up (where mounting is
not allowed, ENOSPC injected into every write to the database files instead). A database turning
read-only is EROFS injected into every write to its files (``iofault.c``, LD_PRELOAD): Linux
refuses to remount a filesystem read-only while a file on it is open for writing, and a disk that
the kernel forces read-only after an error (ext4 ``errors=remount-ro``) never comes back without
the operator.
"""

from __future__ import annotations

import contextlib
import errno
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.daemon_harness import DaemonProcess, alerts, free_port, scrape, wait_for
from tests.reliability.conftest import (
    IoFault,
    Sinks,
    log_problems,
    page_with,
    rate,
    record,
    write_config,
)
from tests.servers import ThreadedPageServer

BUSY_TIMEOUT = 5.0  # monitor.store.sqlite's


def store_errors(metrics: str) -> int:
    found = re.findall(
        r'^ticker_monitor_store_errors_total\{operation="\w+"\} (\S+)$', metrics, re.M
    )
    return int(sum(float(v) for v in found))


def warnings_without_traces(daemon: DaemonProcess, name: str) -> list[dict[str, object]]:
    found = daemon.events_named(name)
    assert all(e["level"] == "warning" and "exception" not in e for e in found), found
    return found


def changed_to(path: Path, n: int) -> bool:
    return any(a["new"] and a["new"]["rate"] == rate(n) for a in alerts(path))


@contextlib.contextmanager
def write_lock(db: Path) -> Iterator[None]:
    """Another process's writer holding the database's write lock for the block."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def test_a_lock_shorter_than_the_busy_timeout_waits_a_longer_one_fails_and_heals(
    tmp_path: Path,
) -> None:
    port = free_port()
    audit = tmp_path / "audit.jsonl"
    figures: dict[str, object] = {}
    with ThreadedPageServer(page_with(rate(0))) as source:
        config = write_config(tmp_path, source.url, Sinks(), listen=f"127.0.0.1:{port}")
        with DaemonProcess(config) as daemon:
            assert daemon.wait_log("check_done", timeout=30)
            db = tmp_path / "state.db"

            # 2 s: the commit waits for the lock, nothing fails
            with write_lock(db):
                source.set_page(page_with(rate(1)))
                time.sleep(2)
            released = time.monotonic()
            assert wait_for(lambda: changed_to(audit, 1), timeout=8)
            figures["locked_2s_delivered_after_release_s"] = round(time.monotonic() - released, 2)
            assert daemon.events_named("check_store_failed") == []

            # longer: commits fail after the busy timeout; the change waits in the page, not lost.
            # Each write waits out the busy timeout in turn on the store's one thread (a lane's
            # claim or mark, its release, then the check's commit), so the first failed check
            # may take a few of them.
            with write_lock(db):
                source.set_page(page_with(rate(2)))
                assert wait_for(lambda: daemon.events_named("check_store_failed"), timeout=30)
                time.sleep(BUSY_TIMEOUT + 2)
            released = time.monotonic()
            assert wait_for(lambda: changed_to(audit, 2), timeout=BUSY_TIMEOUT + 10)
            figures["locked_long_delivered_after_release_s"] = round(time.monotonic() - released, 2)
            failed = warnings_without_traces(daemon, "check_store_failed")
            assert "database is locked" in str(failed[0]["error"])
            assert store_errors(scrape(port, "/metrics", tmp_path)) >= len(failed)
            assert daemon.terminate() == 0
            assert log_problems(daemon.logs()) == []
    assert [a["new"]["rate"] for a in alerts(audit)] == [rate(1), rate(2)]
    record("store_locked", **figures)


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path | None]:
    """A tmpfs of ``size`` mounted at ``where`` for the block, or None where mounting is not
    allowed (its files are copied out at the end, so that the secret grep reads them)."""
    where.mkdir()
    mount = shutil.which("mount")
    done = subprocess.run(
        [mount or "mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        yield None
        return
    try:
        yield where
    finally:
        keep = where.parent / f"{where.name}-copy"
        with contextlib.suppress(OSError):
            shutil.copytree(where, keep)
        subprocess.run([shutil.which("umount") or "umount", "-l", str(where)], check=False)


def fill(filler: Path) -> None:
    """Write ``filler`` until its filesystem is full to the last byte."""
    # unbuffered: a buffered file's close() would flush what did not fit, and raise ENOSPC there
    with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(bytes(64 << 10))


def fault_cycle(
    tmp_path: Path,
    *,
    database: Path,
    env: dict[str, str] | None,
    break_it: Callable[[], None],
    heal: Callable[[], None],
    error: str,
) -> dict[str, object]:
    """Baseline; break the disk; change the page; the checks fail as warnings; heal; the change
    arrives. Returns the case's figures."""
    port = free_port()
    audit = tmp_path / "audit.jsonl"
    with ThreadedPageServer(page_with(rate(0))) as source:
        config = write_config(
            tmp_path, source.url, Sinks(), listen=f"127.0.0.1:{port}", database=database
        )
        with DaemonProcess(config, env=env) as daemon:
            assert daemon.wait_log("check_done", timeout=30)
            break_it()
            try:
                source.set_page(page_with(rate(1)))
                assert wait_for(lambda: len(daemon.events_named("check_store_failed")) >= 2, 15)
                assert not changed_to(audit, 1)
            finally:
                heal()
            healed = time.monotonic()
            assert wait_for(lambda: changed_to(audit, 1), timeout=10)
            seconds = round(time.monotonic() - healed, 2)
            failed = warnings_without_traces(daemon, "check_store_failed")
            assert error in str(failed[0]["error"]), failed[0]
            assert store_errors(scrape(port, "/metrics", tmp_path)) >= len(failed)
            assert daemon.terminate() == 0
            assert log_problems(daemon.logs()) == []
    assert [a["new"]["rate"] for a in alerts(audit)] == [rate(1)]
    return {"delivered_after_heal_s": seconds, "failed_checks": len(failed)}


def test_a_database_turned_read_only_loses_nothing_and_heals(
    tmp_path: Path, iofault: IoFault
) -> None:
    # every write to the database files fails with EROFS, as on a filesystem remounted
    # read-only; SQLite reports it as a disk I/O error
    db = tmp_path / "state.db"
    figures = fault_cycle(
        tmp_path,
        database=db,
        env=iofault.env(db),
        break_it=lambda: iofault.fail(errno.EROFS),
        heal=iofault.heal,
        error="disk I/O error",
    )
    record("store_read_only", how="EROFS from every write (LD_PRELOAD shim)", **figures)


def test_a_full_disk_loses_nothing_and_heals_when_space_is_back(
    tmp_path: Path, iofault: IoFault
) -> None:
    with tmpfs(tmp_path / "fs", "4m") as fs:
        if fs is not None:  # a real filesystem that fills up
            db, env, how = fs / "state.db", None, "a 4 MB tmpfs filled up"
            filler = fs / "filler"

            def break_it() -> None:
                fill(filler)

            def heal() -> None:
                filler.unlink(missing_ok=True)

        else:  # no mount allowed here: ENOSPC from every write
            db = tmp_path / "state.db"
            env, how = iofault.env(db), "ENOSPC from every write (LD_PRELOAD shim, no tmpfs)"

            def break_it() -> None:
                iofault.fail(errno.ENOSPC)

            heal = iofault.heal
        figures = fault_cycle(
            tmp_path, database=db, env=env, break_it=break_it, heal=heal, error="full"
        )
    record("store_full", how=how, **figures)
