"""The daemon: runs the parts that ``monitor.app.build_app`` built.

``Daemon.run_once`` checks every target once (but for those another instance holds) and delivers
what is due (``run --once``). ``Daemon.run_forever`` joins the store's cluster
(``monitor.cluster``), schedules one APScheduler job per target and runs the delivery worker and
the cluster's heartbeat until SIGTERM/SIGINT, then stops scheduling, lets in-flight checks and sends
finish within the grace period, leaves the rest in the outbox, leaves the cluster (its targets and
claims go to the others at once) and returns. Each job first asks the cluster for its turn: only
the instance holding the target checks it, at most once per interval.

Nothing here is global: two daemons in one process (as the tests do) share nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.app import App
from monitor.check import CheckResult, TargetPlan
from monitor.cluster import ClusterView, Turn
from monitor.config_types import ActiveWindow
from monitor.errors import MonitorError, StoreError
from monitor.heap import CollectorPolicy, fix_mmap_threshold
from monitor.models import TargetState
from monitor.status import Board, StatusService, seed_board
from monitor.store import ClusterStore
from monitor.web import WebServer, operator_app

log = structlog.get_logger("monitor.daemon")

#: first runs after a start come at most this many a second on average (see :func:`startup_spread`)
STARTUP_RATE = 10.0


def startup_spread(targets: int, interval: float) -> float:
    """Over how many seconds the first runs of ``targets`` targets (this one's ``interval``) are
    spread after a start: ``min(interval, targets / STARTUP_RATE)``.

    A few targets are checked at once; many start no faster than :data:`STARTUP_RATE` a second,
    or than their steady rate when that is higher (the spread is then the whole interval, so the
    checks of every later minute are as even as the first: 5,000 targets every 60 s spread over
    30 s made each minute's checks come in 30 s bursts at twice the mean rate).
    """
    return max(0.0, min(interval, targets / STARTUP_RATE))


#: how often the daemon asks the store whether it answers (for /readyz, the outbox gauges)
STORE_PROBE_EVERY = 15.0
#: a probe that takes longer than this counts as the store not answering
STORE_PROBE_DEADLINE = 5.0
#: the clock watch compares the wall clock with the monotonic clock this often (seconds) ...
CLOCK_WATCH_EVERY = 1.0
#: ... and takes a difference of at least this many seconds for a step of the wall clock
CLOCK_STEP = 2.0

T = TypeVar("T")


def in_window(window: ActiveWindow | None, now: datetime) -> bool:
    """Is ``now`` inside the target's active window (always, without one)?"""
    return window is None or window.contains(now)


class Daemon:
    """Runs what :func:`monitor.app.build_app` built: the scheduler, the delivery worker and
    the endpoint; owns the app's lifecycle from ``run_once``/``run_forever`` on (it closes it)."""

    def __init__(self, app: App, *, rng: random.Random | None = None) -> None:
        self.app = app
        self.settings = app.settings
        self._clock = app.clock
        self._rng = rng or random.Random()  # noqa: S311 -- spreads start times, not a secret
        self.metrics = app.metrics
        self.store: ClusterStore = app.store
        self.sinks = app.sinks
        self.fetcher = app.fetcher
        self.deliverer = app.deliverer
        self.checker = app.checker
        self.plans = list(app.plans)
        self._stop = asyncio.Event()
        #: the checks running now, each in a task of its own (cancelled past the grace period)
        self._inflight: set[asyncio.Task[Any]] = set()
        #: the same for housekeeping
        self._chores: set[asyncio.Task[Any]] = set()
        #: the scheduler's job tasks awaiting them
        self._jobs: set[asyncio.Task[Any]] = set()
        self.web: WebServer | None = None
        self._started_at = self._clock()
        #: what the status page, /readyz and `status` show; updated as checks run
        self.board = Board(self.settings.targets, started_at=self._started_at)
        self._scheduler: AsyncIOScheduler | None = None
        #: short full collections of the cyclic GC (housekeeping freezes what lives; see there)
        self._collector = CollectorPolicy()
        #: which targets this daemon checks (one of several instances, or the only one)
        self.cluster = app.cluster
        self.cluster.on_acquired = self._acquired
        self.cluster.on_view = self._cluster_seen
        self.cluster.on_store_error = partial(self.board.store_write_failed, "heartbeat")

    # --- lifecycle ---------------------------------------------------------------------------

    async def _open(self) -> None:
        try:
            await self.store.open()
            await self.cluster.join()  # refuses to share a SQLite file with another daemon
        except BaseException:
            await self._close()
            raise
        try:
            await seed_board(self.board, self.store)
        except StoreError as exc:  # the page starts empty; the checks fill it
            log.warning("status_seed_failed", error=str(exc))
        for name, live in self.board.targets.items():
            self.metrics.quotes(name, live.state.snapshot)
        await self.deliverer.release_orphans(self.app.lease_is_over)
        orphaned = sorted(set(await self.store.sinks_with_pending()) - set(self.sinks))
        if orphaned:
            log.warning("outbox_rows_for_unknown_sinks", sinks=orphaned)
        log.info(
            "daemon_started",
            targets=len(self.plans),
            sinks=sorted(self.sinks),
            rules=len(self.settings.rules),
        )

    async def _close(self) -> None:
        if self.web is not None:
            await self.web.aclose()
        await self.app.aclose()

    def request_stop(self) -> None:
        self._stop.set()

    # --- one-shot ----------------------------------------------------------------------------

    async def run_once(self) -> list[CheckResult]:
        """Check every target once (now, regardless of active windows and schedules), but for
        those another instance holds; deliver what is due, return."""
        await self._open()
        try:
            done = await asyncio.gather(*(self._check_once(p) for p in self.plans))
            await self.deliverer.deliver_due()
            return [r for r in done if r is not None]
        finally:
            await self.cluster.leave()
            await self._close()

    async def _check_once(self, plan: TargetPlan) -> CheckResult | None:
        if not await self.cluster.take_now(plan.name):
            log.info(
                "check_skipped_elsewhere", target=plan.name, reason="another instance holds it"
            )
            return None
        return await self.checker.check(plan, remember=False)  # no next read to learn for

    # --- the daemon --------------------------------------------------------------------------

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        fix_mmap_threshold()  # a long run's RSS: see there
        # first of all: a SIGTERM while the store opens ends the start cleanly (exit 0), instead
        # of killing the process with the default action
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await self._open()
        except BaseException:
            self._default_signals(loop)
            raise
        try:  # the first heartbeat takes this daemon's targets before anything is scheduled
            await self.cluster.tick()
        except StoreError as exc:  # the next heartbeats try again
            log.warning("cluster_heartbeat_failed", error=str(exc))
            self.board.store_write_failed("heartbeat", str(exc))
        listen = self.settings.monitor.listen
        if listen:
            self.web = WebServer(operator_app(self.status_service()), listen)
            try:
                await self.web.start()
            except BaseException:
                self.web = None
                await self.cluster.leave()
                await self._close()
                self._default_signals(loop)
                raise
        scheduler = self._start_scheduler()
        worker = asyncio.create_task(self.deliverer.run(), name="deliverer")
        watch = asyncio.create_task(self._watch_clock(scheduler), name="clock-watch")
        heartbeat = asyncio.create_task(self.cluster.run(), name="cluster-heartbeat")
        try:
            await self._stop.wait()
        finally:
            grace = self.settings.monitor.grace_period
            log.info("daemon_stopping", grace_period=grace, inflight_checks=len(self._inflight))
            self._collector.stop()  # first: whatever fails below, nothing stays frozen
            watch.cancel()
            # pause, not shutdown: APScheduler's shutdown cancels the jobs still running
            scheduler.pause()
            deadline = loop.time() + grace  # one grace period for checks and sends together
            await self._finish_checks(grace)
            scheduler.shutdown(wait=False)
            await self._deliver_before_exit(deadline - loop.time())
            await self.deliverer.stop(max(0.0, deadline - loop.time()))
            for task in (worker, watch, heartbeat):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.cluster.leave()  # the others take over at once, not after a lease
            self._default_signals(loop)
            await self._close()
            log.info("daemon_stopped")

    def _start_scheduler(self) -> AsyncIOScheduler:
        """The targets' jobs, the store probe and housekeeping, started."""
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_listener(
            self._on_job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_SUBMITTED
        )
        self._scheduler = scheduler
        self.schedule(scheduler)
        scheduler.add_job(
            self._probe_store,
            IntervalTrigger(seconds=STORE_PROBE_EVERY),
            id="store-probe",
            next_run_time=self._clock(),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=int(STORE_PROBE_EVERY),
        )
        scheduler.add_job(
            self._housekeeping_job,
            IntervalTrigger(seconds=60),
            id="housekeeping",
            next_run_time=self._clock(),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=60,
        )
        scheduler.start()
        return scheduler

    async def _finish_checks(self, grace: float) -> None:
        """Let the checks and housekeeping in flight finish within ``grace``; cancel the rest,
        then let their jobs return, so that the scheduler's shutdown cancels none of its own (it
        would log a ``CancelledError`` traceback for each)."""
        await asyncio.sleep(0)  # a job submitted just before the pause starts and sees the stop
        running = self._inflight | self._chores
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()
        if self._jobs:
            await asyncio.wait(set(self._jobs), timeout=5.0)

    async def _deliver_before_exit(self, seconds: float) -> None:
        """Send what the last checks committed, if the grace period allows; the rest waits."""
        if seconds <= 0:
            return
        try:
            async with asyncio.timeout(seconds):
                await self.deliverer.deliver_due()
        except TimeoutError:
            log.info("delivery_left_in_outbox", reason="grace period over")
        except MonitorError as exc:
            log.warning("delivery_before_exit_failed", error=str(exc))

    @staticmethod
    def _default_signals(loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("signal_received", signal=sig.name)
        self.request_stop()

    def schedule(self, scheduler: AsyncIOScheduler) -> None:
        """Add one job per target: interval with jitter, first runs spread, one at a time."""
        now = self._clock()
        for plan in self.plans:
            interval = plan.config.interval
            spread = startup_spread(len(self.plans), interval)
            first = now + timedelta(seconds=self._rng.uniform(0, spread))
            jitter = plan.config.effective_jitter
            # APScheduler 3 adds the jitter to a fire time and counts the next interval from it:
            # the mean period would be interval + jitter/2. Shorten the interval to make up for it.
            scheduler.add_job(
                self._job,
                IntervalTrigger(seconds=interval - jitter / 2, jitter=jitter or None),
                args=(plan,),
                id=f"target:{plan.name}",
                name=plan.name,
                next_run_time=first,
                max_instances=1,
                coalesce=True,
                # a late run (the wall clock stepped forward, the machine slept) still runs, once
                misfire_grace_time=None,
            )
            self.board.scheduled(plan.name, first)
            log.info("target_scheduled", target=plan.name, interval=interval, first_run=first)

    def _next_run(self, plan: TargetPlan) -> datetime | None:
        job = self._scheduler.get_job(f"target:{plan.name}") if self._scheduler else None
        return None if job is None else job.next_run_time

    async def _job(self, plan: TargetPlan) -> CheckResult | None:
        if self._stop.is_set():
            return None
        next_run = self._next_run(plan)
        self.board.scheduled(plan.name, next_run)
        if not in_window(plan.config.active, self._clock()):
            log.debug("check_skipped_inactive", target=plan.name)
            return None
        done = await self._own_task(
            self._check(plan, next_run), f"check:{plan.name}", self._inflight
        )
        if done.cancelled():
            log.warning("check_abandoned", target=plan.name, reason="grace period over")
            return None
        return done.result()

    async def _housekeeping_job(self) -> None:
        done = await self._own_task(self._housekeeping(), "housekeeping", self._chores)
        if done.cancelled():
            log.warning("housekeeping_abandoned", reason="grace period over")

    async def _own_task(
        self, work: Coroutine[Any, Any, T], name: str, running: set[asyncio.Task[Any]]
    ) -> asyncio.Task[T]:
        """Run a scheduler job's ``work`` in a task of its own, kept in ``running`` while it runs,
        and return it done: a stop past the grace period cancels that task, not the job (a
        cancelled job is a traceback in APScheduler's log)."""
        job = asyncio.current_task()
        assert job is not None  # noqa: S101 -- always inside a task under AsyncIOScheduler
        task = asyncio.create_task(work, name=name)
        running.add(task)
        self._jobs.add(job)
        try:
            await asyncio.wait({task})
        finally:
            running.discard(task)
            self._jobs.discard(job)
        return task

    async def _check(self, plan: TargetPlan, next_run: datetime | None) -> CheckResult | None:
        try:
            turn = await self.cluster.turn(plan.config, load=True)
            if not turn.check:
                self._not_my_turn(plan, turn)
                return None
            result = await self.checker.check(plan, next_check=next_run, loaded=turn.loaded)
        except StoreError as exc:  # expected when the disk is full or the file locked: no trace
            log.warning("check_store_failed", target=plan.name, error=str(exc))
            self.metrics.store_error("check")
            self.board.store_write_failed("check", str(exc))  # a store error's text is safe
            self.board.checked(
                plan.name, at=self._clock(), outcome="error", error=str(exc), state=None
            )
            return None
        except Exception as exc:  # a job never takes the daemon down; the error is logged, counted
            log.exception("check_crashed", target=plan.name)
            self.metrics.job_problem(plan.name, "error")
            shown = f"internal error ({type(exc).__name__})"  # a bug: its type only
            self.board.checked(
                plan.name, at=self._clock(), outcome="error", error=shown, state=None
            )
            return None
        if result.committed:
            self.board.store_wrote("check")
        self.board.checked(
            plan.name,
            at=self._clock(),
            outcome=result.outcome,
            error=result.error,
            state=result.state,
        )
        self.metrics.quotes(plan.name, result.state.snapshot if result.state else None)
        return result

    def _not_my_turn(self, plan: TargetPlan, turn: Turn) -> None:
        """Another instance holds the target, or it was checked less than an interval ago (a
        takeover, an early run): then its job moves to when it is due."""
        if turn.due_in is None:
            log.debug("check_skipped_elsewhere", target=plan.name, owner=turn.owner)
            return
        due = self._clock() + timedelta(seconds=turn.due_in)
        self._move_job(plan.name, due)
        log.info("check_not_due", target=plan.name, due_in=round(turn.due_in, 3))

    def _move_job(self, target: str, when: datetime) -> None:
        job = self._scheduler.get_job(f"target:{target}") if self._scheduler else None
        if job is not None:
            job.modify(next_run_time=when)
            self.board.scheduled(target, when)

    def _acquired(self, target: str, state: TargetState) -> None:
        """This daemon took ``target`` (another instance died, left or handed it over): its
        state as stored now, and its job runs at once (its turn says when it is due)."""
        self.board.seed(target, state)
        self.metrics.quotes(target, state.snapshot)
        self._move_job(target, self._clock())

    def _cluster_seen(self, view: ClusterView) -> None:
        self.board.store_wrote("heartbeat")
        self.board.clustered(view)
        self.metrics.cluster(view, self.board.targets)
        for name in self.board.targets:
            if not view.holds(name):  # another instance's gauges are its own
                self.metrics.quotes(name, None)

    async def _watch_clock(self, scheduler: AsyncIOScheduler) -> None:
        """Keep the schedule on the monotonic clock when the wall clock steps.

        APScheduler 3 counts each next run from wall-clock times: after a step back of an hour,
        every job would wait the extra hour. This watch compares the wall clock with the monotonic
        clock every second; on a step back it moves every job's next run back by the step (a job
        keeps the wait it had). A step forward needs nothing: the jobs fall due at once, run
        once (coalesced, never "missed") and APScheduler counts on from the new time. Either way
        the delivery lanes look again (the store bounds a retry's wait after a step back, see
        ``SqliteStore.claim``).
        """
        loop = asyncio.get_running_loop()
        wall, mono = self._clock().timestamp(), loop.time()
        while True:
            await asyncio.sleep(CLOCK_WATCH_EVERY)
            now_wall, now_mono = self._clock().timestamp(), loop.time()
            step = (now_wall - wall) - (now_mono - mono)
            wall, mono = now_wall, now_mono
            if abs(step) < CLOCK_STEP:
                continue
            log.warning("clock_stepped", seconds=round(step, 3))
            if step < 0:
                shift = timedelta(seconds=step)
                for job in scheduler.get_jobs():
                    if job.next_run_time is not None:
                        job.modify(next_run_time=job.next_run_time + shift)
            self.deliverer.wake()

    def _on_job_event(self, event: JobEvent) -> None:
        target = str(event.job_id).removeprefix("target:")
        if event.code == EVENT_JOB_SUBMITTED:
            if isinstance(event, JobSubmissionEvent) and str(event.job_id).startswith("target:"):
                planned = max(event.scheduled_run_times)
                self.metrics.late(target, (self._clock() - planned).total_seconds())
            return
        if event.code == EVENT_JOB_MISSED:
            log.warning("check_missed", target=target, scheduled=str(event.scheduled_run_time))
            self.metrics.job_problem(target, "missed")
        elif isinstance(event, JobExecutionEvent):
            log.error("job_failed", target=target, error=str(event.exception))
            self.metrics.job_problem(target, "error")

    async def _housekeeping(self) -> None:
        try:
            retention = timedelta(seconds=self.settings.monitor.history_retention)
            removed = await self.store.expire_history(self._clock() - retention)
            if removed:
                log.info("history_expired", rows=removed)
        except StoreError as exc:
            log.warning("housekeeping_store_failed", error=str(exc))
            self.metrics.store_error("housekeeping")
        except Exception:
            log.exception("housekeeping_failed")
        self._collector.tick()  # after the store's work: what it allocated is frozen too

    async def _probe_store(self) -> None:
        """Does the store answer? The flag /readyz reads, and the outbox gauges."""
        try:
            async with asyncio.timeout(STORE_PROBE_DEADLINE):
                counts = await self.store.outbox_counts()
        except TimeoutError:
            self.board.store_failed(f"no answer within {STORE_PROBE_DEADLINE:g}s")
        except StoreError as exc:
            self.board.store_failed(str(exc))
        else:
            self.board.store_answered(counts)
            self.metrics.set_outbox(counts)
            return
        log.warning("store_not_answering", error=self.board.store_error)

    # --- endpoint ----------------------------------------------------------------------------

    def status_service(self) -> StatusService:
        """What the operator endpoint serves: from the board (memory), the store for the page."""
        return StatusService(
            self.board,
            self.store,
            clock=self._clock,
            active=lambda target, now: in_window(target.active, now),
            metrics=self.metrics.render,
        )


__all__ = ["Daemon", "in_window", "startup_spread"]
