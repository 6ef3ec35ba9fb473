"""One check of one target: fetch → parse → detect → route → commit (state + outbox together) → wake.

:class:`Checker` holds no state of its own between checks: everything the detector remembers lives in
the store, written in the same transaction as the alerts it caused. A crash anywhere before the commit
leaves the previous state in place, so the next check finds the same change again; a crash after it
leaves the alerts in the outbox for the delivery worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

import structlog

from monitor.detect import FetchFailed, Observed, Outcome, ParseFailed, Policy, implausible_pairs
from monitor.detect import step as detect_step
from monitor.errors import FetchError, ParseError
from monitor.fetch import Fetcher, FetchPolicy, FetchResult, safe_url
from monitor.logs import bind_check, unbind_check
from monitor.metrics import Metrics
from monitor.models import Snapshot, TargetState, Validators
from monitor.parse import Grammar, parse
from monitor.route import Route, route
from monitor.settings import TargetConfig
from monitor.store import Store

log = structlog.get_logger("monitor.check")

#: an unchanged check rewrites the target's state (its ``last_success_at``) at most this often
STATE_REFRESH = 300.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one check did: its outcome (``observed``, ``not_modified``, ``fetch_failed``,
    ``parse_failed``), how many events it detected and how many outbox rows it wrote."""

    target: str
    check_id: str
    outcome: str
    events: int
    deliveries: int


@dataclass(frozen=True, slots=True)
class TargetPlan:
    """A target's settings turned into what the hot path needs, computed once at start-up."""

    config: TargetConfig
    grammar: Grammar
    fetch_policy: FetchPolicy
    detect_policy: Policy
    headers: dict[str, str]

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def state_refresh(self) -> float:
        """How stale the stored ``last_success_at`` may grow before an unchanged check writes it."""
        limit = self.config.down_for
        return STATE_REFRESH if limit is None else min(STATE_REFRESH, limit / 5)

    @property
    def fingerprint(self) -> str:
        """A digest of the settings that decide what a page reads as."""
        c = self.config
        parts = [c.url, c.selector, c.pattern, c.quote_currency, c.decimal_separator, *c.pairs]
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def read_snapshot(body: bytes, plan: TargetPlan) -> Snapshot:
    """Parse a page and keep only the target's configured pairs (all when none are configured)."""
    snapshot = parse(body, selector=plan.config.selector, grammar=plan.grammar)
    if snapshot.conflicts:
        log.warning("ticker_repeats_disagree", pairs=list(snapshot.conflicts), kept="first block")
    return configured_pairs(snapshot, plan)


def configured_pairs(snapshot: Snapshot, plan: TargetPlan) -> Snapshot:
    """Only the target's configured pairs (all when none are configured); none is a ParseError."""
    wanted = plan.config.pairs
    if wanted:
        quotes = tuple(q for q in snapshot.quotes if q.pair in wanted)
        if not quotes:
            raise ParseError(f"none of the configured pairs ({', '.join(wanted)}) is on the page")
        snapshot = replace(snapshot, quotes=quotes)
    return snapshot


class Checker:
    """Runs checks. Built once by the composition root; safe to call concurrently for other targets."""

    def __init__(
        self,
        *,
        store: Store,
        fetcher: Fetcher,
        routes: tuple[Route, ...],
        on_committed: Callable[[], None],
        clock: Callable[[], datetime],
        metrics: Metrics,
        max_concurrent: int = 16,
    ) -> None:
        self._store = store
        self._fetcher = fetcher
        self._routes = routes
        self._on_committed = on_committed
        self._clock = clock
        self._metrics = metrics
        self._slots = asyncio.Semaphore(max_concurrent)

    async def check(self, plan: TargetPlan) -> CheckResult:
        check_id = uuid.uuid4().hex[:12]
        bind_check(plan.name, check_id)
        started = time.perf_counter()
        try:
            async with self._slots:
                result = await self._check(plan, check_id)
        finally:
            unbind_check()
        self._metrics.check_done(plan.name, result.outcome, time.perf_counter() - started)
        return result

    async def _check(self, plan: TargetPlan, check_id: str) -> CheckResult:
        now = self._clock()
        # the silences come with the state: every instance sharing the store honours them
        state, validators, silences = await self._store.load_for_check(plan.name, now=now)
        stored = state
        if state.fingerprint != plan.fingerprint:
            if state.snapshot is not None:
                log.info("target_settings_changed", detail="the next observation is a baseline")
            state = replace(
                state,
                snapshot=None,
                alarms={k: v for k, v in state.alarms.items() if "|*|" in k},  # outages stay
                last_alerted={},
                fingerprint=plan.fingerprint,
            )
        url = plan.config.url
        observed: Snapshot | None = None
        new_validators = Validators()
        outcome: Outcome
        label: str
        try:
            # Validators are only worth sending while we hold the snapshot they describe.
            fetched = await self._fetch(plan, validators if state.snapshot else None)
            if fetched.not_modified and state.snapshot is not None:
                outcome, label = Observed(state.snapshot), "not_modified"
            else:
                observed = await self._read_confirmed(plan, fetched, state.snapshot)
                outcome, label = Observed(observed), "observed"
            new_validators = fetched.validators
        except FetchError as exc:
            outcome, label = FetchFailed(str(exc)), "fetch_failed"
            new_validators = validators
            log.warning("fetch_failed", url=safe_url(url), error=str(exc))
        except ParseError as exc:
            # Keep no validators: a 304 must never confirm a page we could not read.
            outcome, label = ParseFailed(str(exc)), "parse_failed"
            log.warning("parse_failed", url=safe_url(url), error=str(exc))

        new_state, events = detect_step(
            state,
            outcome,
            now,
            target=plan.name,
            source_url=safe_url(url),
            policy=plan.detect_policy,
        )
        deliveries, last_routed = route(
            events,
            self._routes,
            check_id=check_id,
            now=now,
            last_routed=new_state.last_routed,
            silences=silences,
        )
        new_state = replace(new_state, last_routed=last_routed)
        # History keeps what changed, not every identical check.
        if observed is not None and observed == state.snapshot:
            observed = None
        # An unchanged check writes nothing: no transaction, no fsync.
        if (
            not deliveries
            and observed is None
            and validators == new_validators
            and self._nothing_new(stored, new_state, now, plan.state_refresh)
        ):
            log.info("check_done", outcome=label, changed=False, events=0, deliveries=0)
            return CheckResult(plan.name, check_id, label, 0, 0)
        inserted = await self._store.commit_check(
            plan.name,
            state=new_state,
            validators=new_validators,
            observed=observed,
            observed_at=now,
            deliveries=deliveries,
        )
        for event in events:
            self._metrics.event(plan.name, event.kind.value)
            log.info(
                "event_detected",
                kind=event.kind.value,
                pair=event.pair,
                detail=event.detail,
                rule=event.rule,
                reminder=event.reminder,
            )
        for d in deliveries:
            if d.silenced_by is not None:
                log.info(
                    "alert_silenced",
                    kind=d.event.kind.value,
                    pair=d.event.pair,
                    sink=d.sink,
                    silenced_by=d.silenced_by,
                )
        if inserted:
            self._on_committed()
        log.info(
            "check_done",
            outcome=label,
            changed=observed is not None,
            events=len(events),
            deliveries=inserted,
        )
        return CheckResult(plan.name, check_id, label, len(events), inserted)

    @staticmethod
    def _nothing_new(stored: TargetState, new: TargetState, now: datetime, refresh: float) -> bool:
        """Is ``new`` the stored state again, but for a ``last_success_at`` refreshed recently?"""
        if replace(new, last_success_at=stored.last_success_at) != stored:
            return False
        last = stored.last_success_at
        return last is not None and (now - last).total_seconds() < refresh

    async def _fetch(self, plan: TargetPlan, validators: Validators | None) -> FetchResult:
        return await self._fetcher.fetch(
            plan.config.url,
            policy=plan.fetch_policy,
            validators=validators,
            headers=plan.headers,
        )

    async def _read_confirmed(
        self, plan: TargetPlan, fetched: FetchResult, previous: Snapshot | None
    ) -> Snapshot:
        """Parse the page; an implausible jump is confirmed by one immediate re-fetch."""
        snapshot = read_snapshot(fetched.body, plan)
        jumps = implausible_pairs(previous, snapshot, plan.config.max_jump_pct)
        if not jumps:
            return snapshot
        log.warning("implausible_jump", pairs=list(jumps), max_jump_pct=plan.config.max_jump_pct)
        again = read_snapshot((await self._fetch(plan, None)).body, plan)
        first, second = snapshot.by_pair(), again.by_pair()
        confirmed = all(
            p in second and second[p].rate == first[p].rate for p in jumps if p in first
        )
        log.info("implausible_jump_rechecked", pairs=list(jumps), confirmed=confirmed)
        return again
