"""Several instances, one database: who is there, who checks which target, who keeps which claim.

Every daemon is a member of the cluster of its store, named by its owner (``monitor.owner``: one
life of one process). On PostgreSQL there may be any number of members on any hosts; on SQLite
the same code runs with one member, and a second daemon on the same file is refused
(:class:`Cluster.join`). Everything is decided by the store, on its clock, with its row locks;
nothing here trusts a host's clock or what another member says about itself.

**Sticky ownership with short leases.** A member checks a target only while it holds the target's
lease (``[cluster].lease``, 10 s by default). Its heartbeat (:meth:`Cluster.tick`, every quarter
of the lease) renews every lease it holds in one statement, says it is alive, and looks at the
others:

- it takes free targets (no lease, or a lapsed one) while it holds fewer than its fair share
  (the targets divided by the live members, rounded up), and any target that stayed free for a
  whole heartbeat whatever its share, so none is left behind;
- it gives back what it holds beyond its fair share when others are alive (so a member that
  started alone and took everything hands over to those that joined);
- it forgets members silent for ``[cluster].forget_after``.

A member whose heartbeat is older than one lease counts as gone (by the store's clock: the
member's own heartbeat, just written, is the store's now). When a member dies its leases lapse
within one lease and the survivors take its targets at their next heartbeats: within 1.5 leases
(15 s by default).

**Once per interval.** Each check begins with :meth:`Cluster.turn`: the store renews the lease and
records that a check begins now, unless the target's last check (by whichever member) began less
than :func:`spacing` ago, in one step (``ClusterStore.begin_check``). So a target is never checked
twice in one interval, even just after a takeover: the new owner checks it when the last check +
the interval comes, or at once when that is past.

**Outbox claims** (:func:`claims_kept`): the delivery lanes renew the claims they hold while they
send, every third of ``[delivery].lease``, and stop sending rows the store says are no longer
theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from monitor.errors import StoreError
from monitor.models import TargetState
from monitor.owner import Owner
from monitor.settings import TargetConfig
from monitor.store import CheckLoad, ClusterStore, Member, TargetLease

__all__ = [
    "Cluster",
    "ClusterPolicy",
    "ClusterView",
    "MemberView",
    "Turn",
    "claims_kept",
    "spacing",
]

log = structlog.get_logger("monitor.cluster")

#: the least slack between two checks of one target, as a share of its interval ...
_SLACK_SHARE = 0.1
#: ... and at most this many seconds: scheduling noise (a late run followed by one on time)
_SLACK_MAX = 1.0
#: how often silent members are forgotten (seconds; every so many heartbeats)
_FORGET_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class ClusterPolicy:
    """``[cluster]`` in the settings."""

    #: how long a target stays a member's without renewal (seconds)
    lease: float = 10.0
    #: a member silent this long is forgotten (seconds)
    forget_after: float = 600.0

    @property
    def heartbeat_every(self) -> float:
        return self.lease / 4

    @property
    def takeover(self) -> float:
        """The longest a dead member's target waits for a survivor: its lease lapses, then a
        survivor's next heartbeat takes it (a heartbeat later at most, if shares must settle)."""
        return self.lease + 2 * self.heartbeat_every


def spacing(config: TargetConfig) -> float:
    """The least time between the starts of two checks of a target, across the cluster.

    The interval, less half the jitter (the scheduler's mean period is the interval, so a run may
    come half a jitter early) and a little slack for scheduling noise (a tenth of the interval,
    at most 1 s).
    """
    interval = config.interval
    slack = min(interval * _SLACK_SHARE, _SLACK_MAX)
    return max(interval - config.effective_jitter / 2 - slack, 0.0)


@dataclass(frozen=True, slots=True)
class Turn:
    """What :meth:`Cluster.turn` says about checking a target now."""

    #: check it now (its start is recorded)
    check: bool
    #: this member holds it but it was checked recently: due in this many seconds
    due_in: float | None = None
    #: who holds it, when another member does (as far as the last heartbeat knows)
    owner: str | None = None
    #: asked to ``load``: what the check reads first (``Store.load_for_check``), read with the turn
    loaded: CheckLoad | None = None


@dataclass(frozen=True, slots=True)
class MemberView:
    """One member as the status shows it."""

    id: str
    host: str
    pid: int
    started_at: datetime
    #: by the store's clock
    last_heartbeat: datetime
    #: its last heartbeat is less than one lease old
    alive: bool
    #: the targets it holds a live lease on
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClusterView:
    """The cluster as one member saw it at its last heartbeat (for the status page, ``status``,
    ``/readyz`` and ``/metrics``). Nothing in it is secret: member names are host/pid/boot/start."""

    #: this member (``""`` when drawn from the store by a command, not by a daemon)
    me: str
    lease: float
    #: what this member holds
    held: tuple[str, ...]
    members: tuple[MemberView, ...]
    #: target -> the member holding a live lease on it
    owners: Mapping[str, str]
    #: target -> when its last check began (store's clock), for the targets with a lease row
    checked_at: Mapping[str, datetime]
    #: one member per database (SQLite)
    single_daemon: bool
    #: when the view was drawn (the store's clock)
    at: datetime

    _holding: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_holding", frozenset(self.held))

    def holds(self, target: str) -> bool:
        """Does this member hold ``target``? (``target in held`` walks the tuple: at 5,000
        targets, asking it of every target blocked the loop for a quarter of a second.)"""
        return target in self._holding


def draw(
    me: str,
    members: Sequence[Member],
    leases: Sequence[TargetLease],
    *,
    now: datetime,
    lease: float,
    single_daemon: bool,
) -> ClusterView:
    """The :class:`ClusterView` of ``members`` and ``leases`` at the store's ``now``."""
    live = {x.target: x.owner for x in leases if x.until > now}
    views = tuple(
        MemberView(
            id=m.id,
            host=m.host,
            pid=m.pid,
            started_at=m.started_at,
            last_heartbeat=m.last_heartbeat,
            # as its leases: a member and its leases end one lease after its last heartbeat
            alive=(now - m.last_heartbeat).total_seconds() < lease,
            targets=tuple(sorted(t for t, o in live.items() if o == m.id)),
        )
        for m in members
    )
    return ClusterView(
        me=me,
        lease=lease,
        held=tuple(sorted(t for t, o in live.items() if o == me)),
        members=views,
        owners=live,
        checked_at={x.target: x.checked_at for x in leases if x.checked_at is not None},
        single_daemon=single_daemon,
        at=now,
    )


async def view_of(store: ClusterStore, *, lease: float, now: datetime) -> ClusterView:
    """The cluster as the store holds it, for a command (no member of its own): ``now`` is the
    caller's, so a member's age is as good as the two clocks agree."""
    return draw(
        "",
        await store.members(),
        await store.target_leases(),
        now=now,
        lease=lease,
        single_daemon=store.single_daemon,
    )


#: ``on_acquired(target, state)``: this member now holds ``target`` (``state`` as stored)
Acquired = Callable[[str, TargetState], None]


@dataclass(eq=False)
class Cluster:
    """This daemon's membership (see the module's docstring).

    ``is_over(member)`` says whether a member is a life of this host that has ended (its leases
    are given back at once at :meth:`join`); ``on_acquired`` is called for each target this member
    takes; ``on_view`` after each heartbeat with what it saw, ``on_store_error`` when one fails.
    """

    store: ClusterStore
    me: Owner
    targets: Collection[str]
    policy: ClusterPolicy
    clock: Callable[[], datetime]
    is_over: Callable[[str], bool]
    on_acquired: Acquired | None = None
    on_view: Callable[[ClusterView], None] | None = None
    #: a heartbeat failed (the store's error, safe to show)
    on_store_error: Callable[[str], None] | None = None
    #: the targets this member holds, as of its last heartbeat or turn
    held: set[str] = field(default_factory=set)
    view: ClusterView | None = None
    #: the targets the previous heartbeat found free
    _free_before: set[str] = field(default_factory=set)
    _ticks: int = 0
    _warned: set[str] = field(default_factory=set)

    @property
    def member(self) -> str:
        return str(self.me)

    # --- life ------------------------------------------------------------------------------------

    async def join(self) -> None:
        """Register; give back at once what ended lives of this host held; on a single-daemon
        store (SQLite), refuse to run next to another live daemon (``StoreError``)."""
        now = self.clock()
        await self.store.register(self.member, host=self.me.host, pid=self.me.pid, now=now)
        members = await self.store.members()
        owners = {m.id for m in members} | {x.owner for x in await self.store.target_leases()}
        for gone in sorted(o for o in owners if o != self.member and self.is_over(o)):
            await self.store.leave(gone)
            log.info("cluster_member_gone", member=gone, reason="its process has ended")
        if self.store.single_daemon:
            others = self._live_others(await self.store.members())
            if others:
                await self.store.leave(self.member)
                raise StoreError(_shared_message(others[0], self.clock(), self.policy.lease))
        log.info("cluster_joined", member=self.member, lease=self.policy.lease)

    async def leave(self) -> None:
        """Clean shutdown: give back every target and claim at once, and unregister."""
        try:
            await self.store.leave(self.member)
        except StoreError as exc:  # they lapse on their own
            log.warning("cluster_leave_failed", error=str(exc))
            return
        if self.held:
            log.info("cluster_left", released=sorted(self.held))
        self.held.clear()

    async def run(self) -> None:
        """Heartbeat until cancelled; a failed heartbeat is logged and the next one tries again."""
        every = self.policy.heartbeat_every
        while True:
            await asyncio.sleep(every)
            try:
                async with asyncio.timeout(self.policy.lease / 2):
                    await self.tick()
            except TimeoutError:
                self._heartbeat_failed("the store did not answer in time")
            except StoreError as exc:
                self._heartbeat_failed(str(exc))

    def _heartbeat_failed(self, error: str) -> None:
        log.warning("cluster_heartbeat_failed", error=error)
        if self.on_store_error is not None:
            self.on_store_error(error)

    # --- the heartbeat ---------------------------------------------------------------------------

    async def tick(self) -> None:
        """One heartbeat: say alive, renew, look, take and give back (module docstring)."""
        store, me, lease = self.store, self.member, self.policy.lease
        now = self.clock()
        if not await store.heartbeat(me, now=now):  # forgotten while cut off: join again
            await store.register(me, host=self.me.host, pid=self.me.pid, now=now)
            log.warning("cluster_rejoined", member=me)
        renewed = set(await store.renew_targets(me, lease=lease, now=now))
        for target in sorted(self.held - renewed):
            log.warning("target_lost", target=target, reason="another instance holds it now")
        self.held = renewed & set(self.targets)
        members = await store.members()
        leases = {x.target: x for x in await store.target_leases()}
        db_now = next((m.last_heartbeat for m in members if m.id == me), None)
        if db_now is None:  # forgotten by another member between our two statements
            return
        single = store.single_daemon
        if single:
            self._warn_if_shared(members)
        view = draw(
            me, members, list(leases.values()), now=db_now, lease=lease, single_daemon=single
        )
        for target in await self._give_back(view):
            leases.pop(target, None)
        for target in await self._take(view, now):
            leases[target] = TargetLease(
                target, me, db_now + timedelta(seconds=lease), view.checked_at.get(target)
            )
        self._ticks += 1
        if self._ticks % max(round(_FORGET_EVERY / self.policy.heartbeat_every), 1) == 1:
            silent_for = self.policy.forget_after
            if await store.forget_members(silent_for=silent_for, now=now):
                members = [
                    m for m in members if (db_now - m.last_heartbeat).total_seconds() <= silent_for
                ]
                log.info("cluster_members_forgotten", members=len(members))
        self.view = draw(
            me, members, list(leases.values()), now=db_now, lease=lease, single_daemon=single
        )
        if self.on_view is not None:
            self.on_view(self.view)

    def _share(self, view: ClusterView) -> tuple[int, int]:
        """(live members, this member's fair share of the targets)."""
        alive = sum(1 for m in view.members if m.alive) or 1
        return alive, math.ceil(len(self.targets) / alive)

    async def _give_back(self, view: ClusterView) -> list[str]:
        """Release what is beyond the fair share, when others are alive to take it."""
        alive, share = self._share(view)
        if alive == 1 or len(self.held) <= share:
            return []
        released = sorted(self.held)[share:]
        for target in released:
            await self.store.release_target(target, owner=self.member)
            self.held.discard(target)
            log.info("target_released", target=target, share=share, members=alive)
        return released

    async def _take(self, view: ClusterView, now: datetime) -> list[str]:
        """Take free targets up to the fair share, and those free for a heartbeat already."""
        _, share = self._share(view)
        free = sorted(t for t in self.targets if t not in view.owners and t not in self.held)
        before, self._free_before = self._free_before, set(free)
        taken: list[str] = []
        for target in free:
            if len(self.held) >= share and target not in before:
                continue  # a member below its share takes it first; else the next heartbeat
            if not await self.store.acquire_target(
                target, owner=self.member, lease=self.policy.lease, now=now
            ):
                continue  # another member was quicker
            self.held.add(target)
            taken.append(target)
            self._free_before.discard(target)
            previous = view.checked_at.get(target)
            log.info(
                "target_acquired",
                target=target,
                last_check=None if previous is None else previous.isoformat(),
            )
            if self.on_acquired is not None:
                state, _ = await self.store.load_target(target)
                self.on_acquired(target, state)
        return taken

    def _live_others(self, members: Sequence[Member]) -> list[Member]:
        """The other members whose heartbeat is within one lease of ours."""
        mine = next((m.last_heartbeat for m in members if m.id == self.member), None)
        if mine is None:
            return []
        return [
            m
            for m in members
            if m.id != self.member and (mine - m.last_heartbeat).total_seconds() < self.policy.lease
        ]

    def _warn_if_shared(self, members: Sequence[Member]) -> None:
        for other in self._live_others(members):
            if other.id not in self._warned:
                self._warned.add(other.id)
                log.error(
                    "sqlite_shared_by_daemons",
                    other=other.id,
                    detail="SQLite serves one daemon: stop one, or use PostgreSQL for several",
                )

    # --- each check ------------------------------------------------------------------------------

    async def turn(self, config: TargetConfig, *, load: bool = False) -> Turn:
        """May this member check ``config``'s target now? Held by another: no, without asking the
        store. Held here: the store records the check's start unless it is not due yet; with
        ``load``, a granted turn carries what the check reads first (one round trip, not two)."""
        name = config.name
        if name not in self.held:
            owner = self.view.owners.get(name) if self.view is not None else None
            return Turn(check=False, owner=owner)
        got = await self.store.begin_check(
            name,
            owner=self.member,
            lease=self.policy.lease,
            spacing=spacing(config),
            now=self.clock(),
            load=load,
        )
        if got is None:
            self.held.discard(name)
            log.warning("target_lost", target=name, reason="another instance holds it now")
            return Turn(check=False)
        if got.granted:
            return Turn(check=True, loaded=got.loaded)
        return Turn(check=False, due_in=max(config.interval - (got.since_last or 0.0), 0.0))

    async def take_now(self, target: str) -> bool:
        """Take ``target`` for a check now, whatever its schedule (``run --once``); False when
        another member holds it."""
        got = await self.store.begin_check(
            target, owner=self.member, lease=self.policy.lease, spacing=0.0, now=self.clock()
        )
        return got is not None


def _shared_message(other: Member, now: datetime, lease: float) -> str:
    age = max((now - other.last_heartbeat).total_seconds(), 0.0)
    return (
        f"another daemon uses this SQLite database ({other.id}, last heartbeat {age:.0f}s ago): "
        "SQLite serves one daemon at a time; stop it first (a daemon silent for "
        f"{lease:g}s counts as gone), or use PostgreSQL to run several"
    )


@contextlib.asynccontextmanager
async def claims_kept(
    store: ClusterStore,
    held: set[int],
    *,
    owner: str,
    lease: float,
    clock: Callable[[], datetime],
    sink: str,
) -> AsyncIterator[None]:
    """While the body runs, renew ``owner``'s claims on the outbox rows in ``held`` every third
    of ``lease``; rows the store says are no longer held (finished, or taken over by another
    member after this one's lease lapsed) leave ``held``, so the caller stops before sending
    them."""

    async def renew() -> None:
        while True:
            await asyncio.sleep(lease / 3)
            ids = sorted(held)
            if not ids:
                continue
            try:
                kept = set(await store.renew_claims(ids, owner=owner, lease=lease, now=clock()))
            except StoreError as exc:  # the lease may still hold; the next round tries again
                log.warning("delivery_renew_failed", sink=sink, rows=len(ids), error=str(exc))
                continue
            await asyncio.sleep(0)  # a row marked meanwhile leaves ``held`` first: not lost
            lost = [i for i in ids if i not in kept and i in held]
            if lost:
                held.difference_update(lost)
                log.warning("delivery_claims_lost", sink=sink, rows=len(lost))

    task = asyncio.create_task(renew(), name=f"renew:{sink}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
