"""One check of one target: fetch → parse → detect → route → commit (state + outbox together) → wake.

:class:`Checker` holds no state of its own between checks: everything the detector remembers lives in
the store, written in the same transaction as the alerts it caused. (It keeps one cache: what each
target's last body read as, so that an unchanged body is not parsed again and a changed one is read
from where its ticker was -- ``Reader.read_again``; without it, a check reads the whole page.)
A crash anywhere before the commit leaves the previous state in place, so the next check finds the
same change again; a crash after it leaves the alerts in the outbox for the delivery worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import structlog

from monitor.detect import FetchFailed, Observed, Outcome, ParseFailed, Policy, implausible_pairs
from monitor.detect import step as detect_step
from monitor.errors import FetchError, FetchTimeout, ParseError
from monitor.fetch import Fetcher, FetchPolicy, FetchResult, safe_url
from monitor.logs import bind_check, unbind_check
from monitor.metrics import Metrics
from monitor.models import Event, NewDelivery, Snapshot, TargetState, Validators
from monitor.parse import Grammar, ParseResult
from monitor.reader import Memo, Reader
from monitor.route import Route, route
from monitor.settings import TargetConfig
from monitor.store import CheckLoad, Store
from monitor.store.group import GroupCommit

log = structlog.get_logger("monitor.check")

#: an unchanged check rewrites the target's state (its ``last_success_at``) at most this often
STATE_REFRESH = 300.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one check did: its outcome (``observed``, ``not_modified``, ``fetch_failed``,
    ``parse_failed``), how many events it detected and how many outbox rows it wrote; the
    target's state after it and the failure's reason (for the status page)."""

    target: str
    check_id: str
    outcome: str
    events: int
    deliveries: int
    state: TargetState | None = None
    error: str = ""
    #: the check wrote to the store (an unchanged check writes nothing)
    committed: bool = False


@dataclass(frozen=True, slots=True)
class TargetPlan:
    """A target's settings turned into what the hot path needs, computed once at start-up."""

    config: TargetConfig
    grammar: Grammar
    fetch_policy: FetchPolicy
    detect_policy: Policy
    headers: dict[str, str]
    #: how its responses are read: selector and grammar, or the compiled ``json_query``
    reader: Reader = field(init=False, compare=False)

    def __post_init__(self) -> None:
        reader = Reader(self.config.selector, self.grammar, self.config.feed_query())
        object.__setattr__(self, "reader", reader)

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
        if c.json_query is not None:  # left out when unset: the digests of pages stay as they were
            parts.append(f"json_query={c.json_query}")
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def read_snapshot(body: bytes, plan: TargetPlan, *, content_type: str = "") -> Snapshot:
    """Read a response (a page, or a JSON feed with ``json_query``) in the charset its
    ``content_type`` declares, and keep only the target's configured pairs (all when none are).
    """
    return _shown(plan.reader.read(body, content_type), plan)


def _shown(result: ParseResult, plan: TargetPlan) -> Snapshot:
    """What a read result shows of the target (its warnings logged), as :func:`read_snapshot`."""
    snapshot = result.snapshot
    for warning in result.warnings:
        log.warning("ticker_partly_read", detail=warning)
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
        commits: GroupCommit | None = None,
    ) -> None:
        self._store = store
        #: where a check's writes go: the store, through a group commit when one is given
        self._commits: GroupCommit | Store = store if commits is None else commits
        self._fetcher = fetcher
        self._routes = routes
        self._on_committed = on_committed
        self._clock = clock
        self._metrics = metrics
        self._slots = asyncio.Semaphore(max_concurrent)
        #: per target, what its last read remembers (``Reader.read_again``): a cache of derived
        #: data only, never state -- a restart or another instance starts without it
        self._memos: dict[str, Memo] = {}

    async def check(
        self,
        plan: TargetPlan,
        *,
        next_check: datetime | None = None,
        remember: bool = True,
        loaded: CheckLoad | None = None,
    ) -> CheckResult:
        """Check ``plan``'s target once; ``next_check`` (when the scheduler runs it again) goes
        into a failure's log line, so a person waiting knows when the next try is. Without
        ``remember`` (a single run), the page is read whole and nothing is kept for a next read.
        ``loaded``: what ``Store.load_for_check`` gave just now (with the cluster's turn), used
        unless the check waits for a free slot (then it reads them again, when it starts)."""
        check_id = uuid.uuid4().hex[:12]
        bind_check(plan.name, check_id)
        started = time.perf_counter()
        if self._slots.locked():  # it will wait: what was loaded may be old by then
            loaded = None
        try:
            async with self._slots:
                result = await self._check(
                    plan, check_id, next_check, remember=remember, loaded=loaded
                )
        finally:
            unbind_check()
        self._metrics.check_done(plan.name, result.outcome, time.perf_counter() - started)
        return result

    async def _check(
        self,
        plan: TargetPlan,
        check_id: str,
        next_check: datetime | None,
        *,
        remember: bool,
        loaded: CheckLoad | None,
    ) -> CheckResult:
        now = self._clock()
        # the silences come with the state: every instance sharing the store honours them (the
        # route judges them at now: those loaded a moment ago are a superset of those active)
        if loaded is None:
            loaded = await self._store.load_for_check(plan.name, now=now)
        state, validators, silences = loaded
        stored = state
        state = self._baseline_if_changed(state, plan)
        url = plan.config.url
        observed: Snapshot | None = None
        new_validators = Validators()
        outcome: Outcome
        label: str
        error = ""
        # one deadline for the check's fetching: retries and the jump re-fetch fit inside it
        deadline = asyncio.get_running_loop().time() + plan.fetch_policy.timeout
        try:
            # Validators are only worth sending while we hold the snapshot they describe.
            fetched = await self._fetch(plan, validators if state.snapshot else None, deadline)
            if fetched.not_modified and state.snapshot is not None:
                outcome, label = Observed(state.snapshot), "not_modified"
            else:
                observed = await self._read_confirmed(
                    plan, fetched, state.snapshot, deadline, remember=remember
                )
                outcome, label = Observed(observed), "observed"
            new_validators = fetched.validators
        except FetchError as exc:
            outcome, label, error = FetchFailed(str(exc)), "fetch_failed", str(exc)
            new_validators = validators
        except ParseError as exc:
            # Keep no validators: a 304 must never confirm a page we could not read.
            outcome, label, error = ParseFailed(str(exc)), "parse_failed", str(exc)

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
        if error:
            self._log_failure(plan, label, error, new_state, next_check)
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
            return CheckResult(plan.name, check_id, label, 0, 0, new_state, error)
        inserted = await self._commits.commit_check(
            plan.name,
            state=new_state,
            validators=new_validators,
            observed=observed,
            observed_at=now,
            deliveries=deliveries,
        )
        self._log_committed(plan, events, deliveries)
        if inserted:
            self._on_committed()
        log.info(
            "check_done",
            outcome=label,
            changed=observed is not None,
            events=len(events),
            deliveries=inserted,
        )
        return CheckResult(
            plan.name, check_id, label, len(events), inserted, new_state, error, committed=True
        )

    def _read(self, plan: TargetPlan, fetched: FetchResult) -> Snapshot:
        """``read_snapshot`` of a fetched body, through what the target's last read remembers
        (an unchanged body is not parsed again; a page's ticker is read from its slice)."""
        memo = self._memos.pop(plan.name, None)
        result, memo, how = plan.reader.read_again(fetched.body, fetched.content_type, memo)
        snapshot = _shown(result, plan)
        self._memos[plan.name] = memo  # only once the body read as a ticker of the target
        log.debug("ticker_read", how=how)
        return snapshot

    @staticmethod
    def _baseline_if_changed(state: TargetState, plan: TargetPlan) -> TargetState:
        """``state`` made a baseline when the target's reading settings changed since it was
        stored: the next observation then alerts on nothing the new settings alone caused."""
        if state.fingerprint == plan.fingerprint:
            return state
        if state.snapshot is not None:
            log.info("target_settings_changed", detail="the next observation is a baseline")
        return replace(
            state,
            snapshot=None,
            alarms={k: v for k, v in state.alarms.items() if "|*|" in k},  # outages stay
            last_alerted={},
            fingerprint=plan.fingerprint,
        )

    def _log_committed(
        self, plan: TargetPlan, events: Sequence[Event], deliveries: Sequence[NewDelivery]
    ) -> None:
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

    @staticmethod
    def _log_failure(
        plan: TargetPlan, label: str, error: str, state: TargetState, next_check: datetime | None
    ) -> None:
        """``fetch_failed``/``parse_failed`` with what a person waiting wants to know: when the
        next check is and, for a fetch, how many more failures make it ``source_down``."""
        extra: dict[str, object] = {}
        if next_check is not None:
            extra["next_check"] = next_check.isoformat(timespec="seconds")
        if label == "fetch_failed":
            down_after = plan.detect_policy.down_after
            extra["failures"] = state.consecutive_failures
            extra["failures_until_down"] = (
                0 if state.down else max(down_after - state.consecutive_failures, 0)
            )
        log.warning(label, url=safe_url(plan.config.url), error=error, **extra)

    @staticmethod
    def _nothing_new(stored: TargetState, new: TargetState, now: datetime, refresh: float) -> bool:
        """Is ``new`` the stored state again, but for a ``last_success_at`` refreshed recently?"""
        if replace(new, last_success_at=stored.last_success_at) != stored:
            return False
        last = stored.last_success_at
        return last is not None and (now - last).total_seconds() < refresh

    async def _fetch(
        self, plan: TargetPlan, validators: Validators | None, deadline: float
    ) -> FetchResult:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            where = safe_url(plan.config.url)
            raise FetchTimeout(f"no time left to fetch {where} within the check", url=where)
        return await self._fetcher.fetch(
            plan.config.url,
            policy=replace(plan.fetch_policy, timeout=remaining),
            validators=validators,
            headers=plan.headers,
        )

    async def _read_confirmed(
        self,
        plan: TargetPlan,
        fetched: FetchResult,
        previous: Snapshot | None,
        deadline: float,
        *,
        remember: bool,
    ) -> Snapshot:
        """Parse the page; a rate that jumped more than ``max_jump_pct`` must read the same in an
        immediate re-fetch before it counts.

        - confirmed (the re-fetch shows the same rate): the jump is real and alerts;
        - not confirmed, and the re-fetch reads plausibly (the old rate again, or a normal move):
          the first read was a glitch and the re-fetch is what the page shows;
        - not confirmed, and the re-fetch jumps too, to yet another rate, or it fails: neither
          read is trusted, the pair keeps its previous rate for this check (no event) and the
          next check looks again.
        """
        if remember:
            snapshot = self._read(plan, fetched)
        else:
            snapshot = read_snapshot(fetched.body, plan, content_type=fetched.content_type)
        limit = plan.config.max_jump_pct
        jumps = implausible_pairs(previous, snapshot, limit)
        if not jumps or previous is None:
            return snapshot
        log.warning("implausible_jump", pairs=list(jumps), max_jump_pct=limit)
        self._memos.pop(plan.name, None)  # the re-fetch, not this body, decides what counts
        try:
            refetched = await self._fetch(plan, None, deadline)
            again = read_snapshot(refetched.body, plan, content_type=refetched.content_type)
        except (FetchError, ParseError) as exc:
            log.warning("implausible_jump_unconfirmed", pairs=list(jumps), error=str(exc))
            return _keep_previous(snapshot, previous, jumps)
        first, second = snapshot.by_pair(), again.by_pair()
        confirmed = [p for p in jumps if p in second and second[p].rate == first[p].rate]
        still = set(implausible_pairs(previous, again, limit))
        held = [p for p in jumps if p not in confirmed and p in still]
        log.info(
            "implausible_jump_rechecked",
            pairs=list(jumps),
            confirmed=len(confirmed) == len(jumps),
            confirmed_pairs=confirmed,
            held_pairs=held,
        )
        return _keep_previous(again, previous, held)


def _keep_previous(snapshot: Snapshot, previous: Snapshot, pairs: Sequence[str]) -> Snapshot:
    """``snapshot`` with the previous quote of each of ``pairs`` (those it could not trust)."""
    if not pairs:
        return snapshot
    before = previous.by_pair()
    quotes = tuple(
        before[q.pair] if q.pair in pairs and q.pair in before else q for q in snapshot.quotes
    )
    return replace(snapshot, quotes=quotes)
