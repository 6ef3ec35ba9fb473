"""The delivery worker: outbox rows to sinks, with every retry decision kept in the database.

The life of one outbox row (one event bound for one sink)::

      commit_check (same transaction as the target's new state)
            │
            ▼
    ┌──► pending ───────── send returned ─────────────────────────────► sent
    │      │  │
    │      │  └──────────── permanent SinkError, or older than max_age,
    │      │                or the retry that reaches max_attempts ────► dead
    │      │
    └──────┘  retryable SinkError, timeout or sink bug:
              attempts + 1, next_attempt_at = now + backoff (Retry-After as a floor)

Each configured sink gets its own lane: an asyncio task that claims the leading run of due rows of
that sink (with a lease, renewed while it sends (``monitor.cluster.claims_kept``), so a crashed
worker's rows come back when the lease lapses, to exactly one other instance), groups them
(rows of one check form one batch when the sink takes digests; for a rate-limited or a ``bulk``
digest sink -- a file, Slack, a webhook -- everything due), sends the batches in order and
marks each outcome. Order is strict per sink: after a retryable failure the lane stops and the rows
behind the failing head wait for it. Lanes never wait for each other, so one failing or slow sink
never delays another. A lane sleeps until the head row is due or until :meth:`Deliverer.wake` (the
checker calls it right after committing new rows), and rate-limits its sink to one send per
``sink.min_interval`` seconds.

Delivery is at least once per (event, sink): a send that the receiver accepted just before the
process died (or before ``stop`` cancelled it after the grace period) is sent again later. A sink
that carries a batch in several messages reports each accepted one (``on_accepted``), and its rows are
marked sent at once, so a crash re-sends at most one message per sink. Every message carries the
row's short dedup id so a human can spot such a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import structlog

from monitor.backoff import full_jitter
from monitor.cluster import claims_kept
from monitor.errors import SinkError, StoreError
from monitor.models import Delivery, by_check
from monitor.sinks import MAX_SEND_TIMEOUT, Accepted, Sink
from monitor.store import ClusterStore

log = structlog.get_logger("monitor.outbox")

T = TypeVar("T")

#: The worker's own bound on one send; sinks enforce their (shorter) timeouts themselves.
DEFAULT_SEND_TIMEOUT = MAX_SEND_TIMEOUT
#: A sleeping lane looks at the outbox at least this often even without a wake-up.
DEFAULT_IDLE_POLL = 30.0
#: The shortest sleep of a lane that found nothing to do (no busy loop on clock edges).
_MIN_PAUSE = 0.01
#: Longest ``last_error`` kept per row.
_MAX_ERROR = 500

#: ``on_result(sink, outcome, count)`` with outcome ``sent``, ``retry`` or ``dead``.
ResultHook = Callable[[str, str, int], None]
#: ``on_delivered(sink, seconds)`` per row sent: the time from the event's detection to its delivery
LatencyHook = Callable[[str, float], None]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long and how often to retry; mirrors ``[delivery]`` in the settings (DeliverySection).

    ``max_age``: a row still undelivered this many seconds after it was written is dead-lettered
    (0 turns the limit off). ``max_attempts``: dead-letter after this many failed attempts
    (0: retry until ``max_age``). Backoff is exponential with full jitter, from
    ``backoff_initial`` doubling up to ``backoff_max``. ``lease``: how long a claimed row stays
    reserved for this worker without renewal (renewed every third of it while it is sent).
    ``batch_size``: rows claimed at a time.
    """

    max_age: float = 86400.0
    max_attempts: int = 0
    backoff_initial: float = 1.0
    backoff_max: float = 600.0
    lease: float = 15.0
    batch_size: int = 50

    def next_delay(
        self, attempts: int, rng: random.Random, retry_after: float | None = None
    ) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1 for the first failure).

        Full jitter: uniform in ``[0, min(backoff_max, backoff_initial * 2**(attempts-1))]``.
        A receiver's ``Retry-After`` is a floor, honoured even above ``backoff_max``.
        """
        delay = full_jitter(attempts, initial=self.backoff_initial, cap=self.backoff_max, rng=rng)
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        return delay

    def expired(self, created_at: datetime, now: datetime) -> bool:
        return self.max_age > 0 and (now - created_at).total_seconds() > self.max_age

    def exhausted(self, attempts: int) -> bool:
        return self.max_attempts > 0 and attempts >= self.max_attempts


@dataclass(eq=False, slots=True)
class _Lane:
    """One sink's worker state. ``leased`` holds the ids this lane claimed and has not marked."""

    name: str
    sink: Sink
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_send: float | None = None
    leased: set[int] = field(default_factory=set)


def _batches(sink: Sink, rows: Sequence[Delivery]) -> list[list[Delivery]]:
    """Consecutive rows of one check form one batch when the sink takes digests.

    A rate-limited digest sink (``min_interval > 0``, e.g. Slack) takes everything that is due as
    one batch: a burst from many checks would otherwise wait its turn message by message. So does
    a ``bulk`` sink (a file: one write and one fsync for all of them).
    """
    if not sink.digest:
        return [[row] for row in rows]
    if sink.min_interval > 0 or sink.bulk:
        return [list(rows)] if rows else []
    return by_check(rows)


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"


class Deliverer:
    """Delivers outbox rows to sinks: ``run()`` as a daemon, ``deliver_due()`` as a burst."""

    def __init__(
        self,
        store: ClusterStore,
        sinks: Mapping[str, Sink],
        *,
        policy: RetryPolicy,
        owner: str,
        clock: Callable[[], datetime] = _utc_now,
        rng: random.Random | None = None,
        on_result: ResultHook | None = None,
        on_delivered: LatencyHook | None = None,
        on_store_error: Callable[[str], None] | None = None,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        idle_poll: float = DEFAULT_IDLE_POLL,
    ) -> None:
        self._store = store
        self._lanes = {name: _Lane(name, sink) for name, sink in sinks.items()}
        self._policy = policy
        self._owner = owner
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 -- backoff jitter, not a secret
        self._on_result = on_result
        self._on_delivered = on_delivered
        self._on_store_error = on_store_error
        self._send_timeout = send_timeout
        self._idle_poll = idle_poll
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- public ------------------------------------------------------------------------------

    def wake(self) -> None:
        """New rows were committed: every sleeping lane looks at the outbox now."""
        for lane in self._lanes.values():
            lane.wake.set()

    async def run(self) -> None:
        """Run one lane per sink until :meth:`stop` (or until cancelled)."""
        if self._stopping or not self._lanes:
            return
        tasks = [self._spawn(self._lane_loop(lane), lane.name) for lane in self._lanes.values()]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for lane, result in zip(self._lanes.values(), results, strict=True):
            if isinstance(result, Exception):  # _lane_loop catches everything; this is a bug
                log.error("delivery_lane_crashed", sink=lane.name, error=repr(result))

    async def release_orphans(self, is_over: Callable[[str], bool]) -> int:
        """Release at once the rows leased by owners whose life ``is_over`` (this instance's
        previous life, killed while it held them), so that a restart sends them now instead of
        after the lease; count them. Other owners' leases are left to lapse."""
        owners = [o for o in await self._store.lease_owners() if o != self._owner and is_over(o)]
        if not owners:
            return 0
        released = await self._store.release_leases_of(owners)
        log.info("outbox_leases_released", owners=owners, rows=released)
        return released

    async def deliver_due(self) -> int:
        """Deliver everything due now, all sinks concurrently; never wait for a backoff.

        Returns how many rows reached a final state (sent, dead) or were scheduled for a retry.
        A store failure is raised after every lane has finished.
        """
        tasks = [self._spawn(self._drain(lane), lane.name) for lane in self._lanes.values()]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        total = 0
        for result in results:
            if isinstance(result, int):
                total += result
            elif isinstance(result, Exception):
                raise result
            # a CancelledError here means stop() cut the lane short after its grace period
        return total

    async def stop(self, grace: float) -> None:
        """Stop claiming; let in-flight sends finish within ``grace`` seconds, then cancel them.

        Rows claimed but not sent are released (their lease cleared) so that the next worker
        takes them at once; a cancelled send's rows are released too and will be sent again.
        """
        self._stopping = True
        self._stop_event.set()
        self.wake()
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(grace, 0.0))
            for task in pending:
                task.cancel()
            if pending:
                log.warning("delivery_stop_cancelled", lanes=len(pending), grace=grace)
                await asyncio.wait(pending, timeout=5.0)
        leftover = sorted(i for lane in self._lanes.values() for i in lane.leased)
        if leftover:
            await self._release(leftover)
            for lane in self._lanes.values():
                lane.leased.clear()

    # --- lanes -------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, T], sink: str) -> asyncio.Task[T]:
        task = asyncio.create_task(coro, name=f"deliver:{sink}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _lane_loop(self, lane: _Lane) -> None:
        failures = 0
        while not self._stopping:
            lane.wake.clear()  # before looking, so a wake-up during the drain is not lost
            timeout: float
            try:
                done = await self._drain(lane)
                due = await self._store.next_due(lane.name)
                failures = 0
            except StoreError as exc:  # expected (disk full, file locked): one line, no trace
                failures += 1
                timeout = min(2.0 ** min(failures - 1, 16), self._idle_poll)
                log.warning(
                    "delivery_store_failed", sink=lane.name, error=str(exc), retry_in=timeout
                )
                if self._on_store_error is not None:
                    self._on_store_error("delivery")
            except Exception:  # a bug in the worker must not end delivery for good
                failures += 1
                timeout = min(2.0 ** min(failures - 1, 16), self._idle_poll)
                log.exception("delivery_lane_failed", sink=lane.name, retry_in=timeout)
            else:
                if due is None:
                    timeout = self._idle_poll
                else:
                    remaining = (due - self._clock()).total_seconds()
                    timeout = min(max(remaining, 0.0), self._idle_poll)
                if not done:
                    timeout = max(timeout, _MIN_PAUSE)
            # stop() sets the wake event, so a stop during the drain ends this wait at once
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await lane.wake.wait()

    async def _drain(self, lane: _Lane) -> int:
        """Claim and deliver this sink's due rows until none are due or the head must wait."""
        async with lane.lock:
            done = 0
            while not self._stopping:
                rows = await self._store.claim(
                    lane.name,
                    now=self._clock(),
                    limit=self._policy.batch_size,
                    lease=self._policy.lease,
                    owner=self._owner,
                )
                if not rows:
                    break
                lane.leased.update(row.id for row in rows)
                try:
                    async with self._kept(lane):
                        count, blocked = await self._deliver_run(lane, rows)
                finally:
                    if lane.leased:  # claimed but not marked: stopping, blocked, or cancelled
                        ids = sorted(lane.leased)
                        lane.leased.clear()
                        await self._release(ids)
                done += count
                if blocked:
                    break
            return done

    def _kept(self, lane: _Lane) -> contextlib.AbstractAsyncContextManager[None]:
        """The lane's claims renewed while it sends (a row lost meanwhile leaves ``leased``)."""
        return claims_kept(
            self._store,
            lane.leased,
            owner=self._owner,
            lease=self._policy.lease,
            clock=self._clock,
            sink=lane.name,
        )

    async def _release(self, ids: Sequence[int]) -> None:
        try:
            # only what this owner still holds: a row another instance took over stays its own
            await self._store.release(ids, owner=self._owner)
        except StoreError as exc:  # the leases lapse on their own; log and go on
            log.warning("delivery_release_failed", rows=len(ids), error=str(exc))

    async def _deliver_run(self, lane: _Lane, rows: Sequence[Delivery]) -> tuple[int, bool]:
        """Deliver one claimed run in order; return (rows marked, whether the lane must stop)."""
        now = self._clock()
        done = 0
        expired = [row for row in rows if self._policy.expired(row.created_at, now)]
        if expired:
            error = f"expired after {self._policy.max_age:g}s undelivered"
            await self._mark(lane, expired, "dead", "delivery_expired", error=error, now=now)
            done += len(expired)
        gone = {row.id for row in expired}
        live = [row for row in rows if row.id not in gone]
        for batch in _batches(lane.sink, live):
            if not await self._rate_limit(lane):
                return done, True
            if any(row.id not in lane.leased for row in batch):
                return done, True  # another instance took these rows over: they are its own
            marked: set[int] = set()
            failure = await self._send(lane, batch, self._on_accepted(lane, batch, marked))
            done += len(batch)
            # the parts the sink reported accepted on the way are marked already
            rest = [row for row in batch if row.id not in marked]
            if rest and not await self._settle(lane, rest, failure):
                return done, True  # strict order: the rows behind this one wait for it
        return done, False

    async def _settle(
        self, lane: _Lane, batch: Sequence[Delivery], failure: SinkError | None
    ) -> bool:
        """Mark a sent batch sent, a failed one for retry or dead; False if the lane must wait."""
        now = self._clock()
        if failure is None:
            await self._mark(lane, batch, "sent", "delivery_sent", now=now)
            return True
        attempts = max(row.attempts for row in batch) + 1
        error = _clip(str(failure))
        if failure.retryable and not self._policy.exhausted(attempts):
            delay = self._policy.next_delay(attempts, self._rng, failure.retry_after)
            await self._mark(
                lane,
                batch,
                "retry",
                "delivery_retry",
                error=error,
                now=now,
                next_attempt_at=now + timedelta(seconds=delay),
                memo=failure.memo,
            )
            return False
        if failure.retryable:
            error = _clip(f"gave up after {attempts} attempts: {failure}")
        await self._mark(lane, batch, "dead", "delivery_dead", error=error, now=now)
        return True

    async def _rate_limit(self, lane: _Lane) -> bool:
        """Wait out the sink's ``min_interval``; False if ``stop`` came meanwhile."""
        interval = lane.sink.min_interval
        if lane.last_send is not None and interval > 0:
            wait = lane.last_send + interval - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._stop_event.wait()
        return not self._stopping

    def _on_accepted(self, lane: _Lane, batch: Sequence[Delivery], marked: set[int]) -> Accepted:
        """The ``on_accepted`` callback of one send: marks each part sent as soon as the sink says
        the receiver took it (so a crash re-sends at most the message in flight); the ids it
        marked go into ``marked``. It never raises: a store failure leaves the part to be marked
        with the rest of the batch."""
        ours = {row.id for row in batch}

        async def accepted(part: Sequence[Delivery]) -> None:
            rows = [row for row in part if row.id in ours and row.id not in marked]
            if not rows:
                return
            try:
                await self._mark(lane, rows, "sent", "delivery_sent", now=self._clock())
            except StoreError as exc:
                log.warning("delivery_mark_failed", sink=lane.name, rows=len(rows), error=str(exc))
                return
            marked.update(row.id for row in rows)

        return accepted

    async def _send(
        self, lane: _Lane, batch: Sequence[Delivery], accepted: Accepted
    ) -> SinkError | None:
        """Send one batch; return None when accepted, else the failure as a ``SinkError``."""
        lane.last_send = time.monotonic()
        try:
            async with asyncio.timeout(self._send_timeout):
                await lane.sink.send(batch, accepted)
        except SinkError as exc:
            return exc
        except TimeoutError:
            return SinkError(f"send did not finish within {self._send_timeout:g}s", retryable=True)
        except Exception as exc:  # a sink bug: logged with its traceback, retried like an outage
            log.exception(
                "delivery_sink_crashed",
                sink=lane.name,
                dedup_id=batch[0].short_id,
                error=type(exc).__name__,
            )
            # Only the type: a foreign exception's text might carry a secret into the database.
            return SinkError(f"the sink raised {type(exc).__name__} (a bug)", retryable=True)
        return None

    async def _mark(
        self,
        lane: _Lane,
        batch: Sequence[Delivery],
        outcome: str,
        event: str,
        *,
        now: datetime,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
        memo: str | None = None,
    ) -> None:
        ids = [row.id for row in batch]
        if outcome == "sent":
            await self._store.mark_sent(ids, now=now)
            if self._on_delivered is not None:
                for row in batch:
                    self._on_delivered(lane.name, (now - row.event.observed_at).total_seconds())
        elif outcome == "retry":
            assert next_attempt_at is not None  # noqa: S101 -- internal call contract
            await self._store.mark_retry(
                ids, now=now, next_attempt_at=next_attempt_at, error=error or "", memo=memo
            )
        else:
            await self._store.mark_dead(ids, now=now, error=error or "")
        lane.leased.difference_update(ids)
        self._log(outcome, event, lane, batch, error=error, next_attempt_at=next_attempt_at)
        if self._on_result is not None:
            self._on_result(lane.name, outcome, len(ids))

    def _log(
        self,
        outcome: str,
        event: str,
        lane: _Lane,
        batch: Iterable[Delivery],
        *,
        error: str | None,
        next_attempt_at: datetime | None,
    ) -> None:
        emit = {"sent": log.info, "retry": log.warning}.get(outcome, log.error)
        extra: dict[str, object] = {}
        if error is not None:
            extra["error"] = error
        if next_attempt_at is not None:
            extra["next_attempt_at"] = next_attempt_at.isoformat()
        rows = list(batch)
        for row in rows:
            emit(
                event,
                sink=lane.name,
                dedup_id=row.short_id,
                # the attempt just made counts; an expired row was not attempted now
                attempts=row.attempts if event == "delivery_expired" else row.attempts + 1,
                target=row.event.target,
                kind=row.event.kind.value,
                batch=len(rows),
                **extra,
            )


__all__ = ["DEFAULT_SEND_TIMEOUT", "Deliverer", "ResultHook", "RetryPolicy"]
