"""Group commit: the checks that finish within a few milliseconds share one transaction.

Every check that changed something commits its state and its alerts together
(``Store.commit_check``); each commit is a transaction and an fsync (a few milliseconds of disk
time on SQLite with ``synchronous=FULL``). :class:`GroupCommit` gathers the commits that arrive
within ``delay`` of the first one waiting (as PostgreSQL's ``commit_delay`` does), and those that
arrive while a transaction is being written, and writes them with one ``Store.commit_checks``: one
transaction, one fsync. Each check is still all or nothing (a savepoint of its own), and
:meth:`GroupCommit.commit` returns only when its check is durable -- so a check wakes the delivery
worker, as before, only after its alerts are committed, and a crash loses nothing that was
reported committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import structlog

from monitor.errors import StoreError
from monitor.models import NewDelivery, Snapshot, TargetState, Validators
from monitor.store import CheckCommit, Store

__all__ = ["COMMIT_DELAY", "GroupCommit"]

log = structlog.get_logger("monitor.store")

#: How long the first commit waiting waits for others to join it (seconds).
COMMIT_DELAY: Final = 0.002
#: At most this many checks share one transaction.
MAX_GROUP: Final = 256


class GroupCommit:
    """``commit_check`` of one store, with the commits that come together written together."""

    def __init__(
        self, store: Store, *, delay: float = COMMIT_DELAY, max_group: int = MAX_GROUP
    ) -> None:
        self._store = store
        self._delay = delay
        self._max_group = max_group
        self._waiting: list[tuple[CheckCommit, asyncio.Future[int]]] = []
        self._writer: asyncio.Task[None] | None = None
        #: transactions written and the checks they held (for the benchmark and the logs)
        self.groups = 0
        self.checks = 0

    async def commit_check(
        self,
        target: str,
        *,
        state: TargetState,
        validators: Validators,
        observed: Snapshot | None,
        observed_at: datetime,
        deliveries: Sequence[NewDelivery],
    ) -> int:
        """``Store.commit_check``: returns when this check is written (or raises ``StoreError``:
        then nothing of it was)."""
        commit = CheckCommit(target, state, validators, observed, observed_at, deliveries)
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((commit, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="group-commit")
        # a check cancelled meanwhile (a stop past the grace period) may still be written, as
        # it may be without grouping: its next check then finds its state as it left it
        return await done

    async def _write(self) -> None:
        while self._waiting:
            if self._delay > 0:
                await asyncio.sleep(self._delay)
            group, self._waiting = (
                self._waiting[: self._max_group],
                self._waiting[self._max_group :],
            )
            try:
                outcomes = await self._store.commit_checks([commit for commit, _ in group])
            except StoreError as exc:  # the transaction failed: none of them was written
                self._fail(group, exc)
                continue
            except Exception as exc:  # a bug in a backend: its checks fail, the others go on
                log.exception("group_commit_failed", checks=len(group))
                self._fail(group, StoreError(f"commit_check: {type(exc).__name__} (a bug)"))
                continue
            except BaseException:
                self._fail(group, StoreError("commit_check: interrupted before it was written"))
                raise
            if len(outcomes) != len(group):
                self._fail(group, StoreError("commit_check: the store answered for other checks"))
                continue
            self.groups += 1
            self.checks += len(group)
            for (_, done), outcome in zip(group, outcomes, strict=True):
                if done.done():
                    continue
                if isinstance(outcome, StoreError):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)

    @staticmethod
    def _fail(group: list[tuple[CheckCommit, asyncio.Future[int]]], error: StoreError) -> None:
        for _, done in group:
            if not done.done():
                done.set_exception(error)

    async def aclose(self) -> None:
        """Let the commits waiting be written (the store closes after this)."""
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(Exception):
                await writer
