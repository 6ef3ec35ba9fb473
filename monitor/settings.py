"""Configuration: a TOML file overridden by ``MONITOR_<SECTION>__<KEY>`` variables and a ``.env`` file.

``load_settings`` is the only way in. It never raises anything but ``ConfigError``, whose ``problems``
name each bad key by its path (``targets[0].interval: ...``) and never echo a secret's value.

Secrets are ``SecretStr``; each secret field ``x`` may instead be given as ``x_file``, a path whose
contents are the secret (the Docker and systemd credentials convention).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from monitor import __version__
from monitor.config_types import (
    ActiveWindow,
    DocDefault,
    Duration,
    Name,
    Pair,
    Strict,
    read_secret_files,
)
from monitor.errors import ConfigError
from monitor.feed import FeedQuery, compile_query
from monitor.models import PAIR_KINDS, EventKind
from monitor.parse import Grammar, check_selector
from monitor.sinks.registry import SinkConfig
from monitor.store.open import BACKENDS, scheme_of

DEFAULT_CONFIG = Path("config/monitor.toml")

_LISTEN = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+)):(?P<port>[0-9]{1,5})$")


def listen_address(value: str) -> tuple[str, int]:
    """``[monitor].listen`` as (host, port): an IP address written out in full (``127.0.0.1``,
    ``[::1]``, ``0.0.0.0``, ``[::]``) or ``localhost``, and a port (0 picks a free one).

    Shorthands that the socket layer would also accept are refused: ``0:9464`` and ``0x0:9464``
    mean ``0.0.0.0`` (every interface) and ``127.1`` means ``127.0.0.1``. Binding beyond loopback
    must be written out.
    """
    match = _LISTEN.match(value)
    if match is None:
        raise ValueError(
            "expected host:port, e.g. 127.0.0.1:9464 or [::1]:9464, or '' to turn it off"
        )
    port = int(match["port"])
    if port > 65535:
        raise ValueError(f"port {port}: expected 0 to 65535")
    host = match["v6"] or match["host"]
    if match["host"] == "localhost":
        return host, port
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{host!r} is not an IP address written out in full (127.0.0.1, [::1], 0.0.0.0, "
            "[::]) nor localhost"
        ) from None
    if address.version == 6 and match["v6"] is None:
        raise ValueError("an IPv6 address is written in brackets: [::1]:9464")
    if address.version == 4 and match["v6"] is not None:
        raise ValueError("only an IPv6 address is written in brackets: 127.0.0.1:9464")
    return str(address), port


def beyond_loopback(host: str) -> bool:
    """Is a listen host (as :func:`listen_address` gives it) reachable from other hosts?"""
    return host != "localhost" and not ipaddress.ip_address(host).is_loopback


# --- [monitor] -------------------------------------------------------------------------------


class MonitorSection(Strict):
    """The daemon itself: its store, logs, endpoint and limits."""

    database: SecretStr = SecretStr("sqlite:///var/state.db")
    """the state store. `sqlite:///relative/path` (relative to the file's directory when written in
    the file) or `sqlite:////absolute/path`; or
    `postgresql://user:password@host:5432/dbname?sslmode=verify-full&sslrootcert=…` (also
    `postgres://`), for several instances on one database: TLS and other options in
    docs/high-availability.md. A URL no store can open is refused by `validate`. The default is
    `sqlite:///var/state.db`: `var/state.db` in the working directory"""
    log_format: Literal["console", "json", "auto"] = "auto"
    """`console` (human), `json` (one object per line), `auto` (console on a terminal, JSON
    otherwise)"""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """`debug`, `info`, `warning`, `error`"""
    listen: str = "127.0.0.1:9464"
    """address of the status page, `/api/status`, `/healthz`, `/readyz` and `/metrics`: an IP
    address written out in full (`127.0.0.1`, `[::1]`) or `localhost`, and a port (`0` picks a free
    one). Binding beyond loopback is an explicit choice (`0.0.0.0:9464`, `[::]:9464`) and logs a
    `web_listening_beyond_loopback` warning at start; shorthands the socket layer would read as
    every interface (`0:9464`, `0x0:9464`) are refused. A port already in use stops the start
    (exit 2). `""` turns the endpoint off"""
    grace_period: Duration = 10.0
    """on SIGTERM/SIGINT, how long in-flight checks and sends may take to finish"""
    history_retention: Duration = 30 * 86400.0
    """observation history older than this is deleted (hourly housekeeping)"""
    max_per_host: Annotated[int, Field(ge=1, le=64)] = 2
    """concurrent fetches to one host (1 to 64)"""
    max_concurrent_checks: Annotated[int, Field(ge=1, le=1024)] = 16
    """concurrent checks overall (1 to 1024)"""
    user_agent: str = f"ticker-monitor/{__version__} (+https://github.com/ticker-monitor)"
    """the default `User-Agent` of every request; a target's `user_agent` overrides it"""

    @model_validator(mode="before")
    @classmethod
    def _files(cls, data: Any) -> Any:
        return read_secret_files(data, ("database",))

    @field_validator("database")
    @classmethod
    def _known_scheme(cls, value: SecretStr) -> SecretStr:
        scheme = scheme_of(value.get_secret_value())
        if scheme not in BACKENDS:
            known = ", ".join(f"{name}://..." for name in BACKENDS)
            raise ValueError(f"no store can open a {scheme or 'scheme-less'} URL; expected {known}")
        return value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value:
            listen_address(value)  # raises ValueError with the reason
        return value


# --- [delivery] ------------------------------------------------------------------------------


class DeliverySection(Strict):
    """The outbox: how long and how often an alert is retried, and how rows are claimed."""

    max_age: Duration = 24 * 3600.0
    """an alert still undelivered this long after it was detected is dead-lettered"""
    max_attempts: Annotated[int, Field(ge=0, le=1000)] = 0
    """dead-letter after this many failed attempts (at most 1000); `0` = retry until `max_age`"""
    backoff_initial: Duration = 1.0
    """first retry delay (exponential, full jitter); more than 0"""
    backoff_max: Duration = 600.0
    """the longest retry delay, at least `backoff_initial`; a receiver's `Retry-After` is honoured
    (up to 1 h)"""
    lease: Duration = 15.0
    """how long a claimed outbox row stays reserved for one sender without renewal; the sender
    renews it every third of it while it sends, so a send may take longer. A restarted daemon
    releases at once the leases its own killed predecessor held (same host); another instance's
    lease lapses after this, and one survivor sends its rows (docs/high-availability.md)"""
    batch_size: Annotated[int, Field(ge=1, le=500)] = 50
    """rows claimed per round per sink (1 to 500)"""

    @model_validator(mode="after")
    def _backoff_moves(self) -> DeliverySection:
        # a zero backoff retries a failing sink in a busy loop
        if self.backoff_initial <= 0:
            raise ValueError("backoff_initial: must be more than 0")
        if self.backoff_max < self.backoff_initial:
            raise ValueError(
                f"backoff_max: must be at least backoff_initial ({self.backoff_initial:g}s)"
            )
        return self


# --- [cluster] -------------------------------------------------------------------------------


class ClusterSection(Strict):
    """Several instances on one database (``docs/high-availability.md``); on SQLite, the one."""

    lease: Duration = 10.0
    """how long a target stays an instance's without renewal (1 s to 5 m); renewed by its heartbeat
    every quarter of it. A dead instance's targets are taken over within 1.5 times this"""
    forget_after: Duration = 600.0
    """a member silent this long leaves the member list (at least twice `lease`); until then the
    status shows it as *silent*"""

    @model_validator(mode="after")
    def _sane(self) -> ClusterSection:
        if not 1 <= self.lease <= 300:
            raise ValueError("lease: must be from 1s to 5m")
        if self.forget_after < 2 * self.lease:
            raise ValueError(f"forget_after: must be at least twice the lease ({self.lease:g}s)")
        return self


# --- [[targets]] -----------------------------------------------------------------------------


class TargetConfig(Strict):
    """One page to watch (a ``[[targets]]`` entry)."""

    name: Name
    """unique; letters, digits, `_ . -` (up to 64); the target's state is kept by it"""
    url: str
    """`http://` or `https://`"""
    interval: Duration = 300.0
    """time between checks (at least 1 s)"""
    jitter: Annotated[Duration | None, DocDefault("a tenth of `interval`")] = None
    """random delay (0 to `jitter`) added to each run, less than `interval`; the mean period stays
    `interval`"""
    timeout: Annotated[Duration | None, DocDefault('the shorter of `"30s"` and `interval`')] = None
    """overall deadline of one check's fetching: its quick retries and the re-fetch of an
    implausible jump included. At most `interval` (a check must end before the next is due; as
    Prometheus refuses `scrape_timeout > scrape_interval`)"""
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    """quick retries inside one check (jittered backoff, `Retry-After` honoured) before the check
    counts as failed (0 to 10)"""
    headers: dict[str, str] = {}
    """extra request headers (`config show` masks their values)"""
    user_agent: Annotated[str | None, DocDefault("`[monitor].user_agent`")] = None
    """per-target `User-Agent`"""
    selector: str | None = None
    """CSS selector scoping the ticker search, e.g. `".ticker"`; one that is not valid CSS is a
    configuration error"""
    pattern: str | None = None
    """a per-site grammar: a regular expression with named groups `base` and `quote` (or `pair`),
    `rate`, optionally `change_pct`, searched in every block (line, table row, `dt`+`dd`); every
    match is an item (docs/parser.md#a-pattern-for-a-sites-own-format)"""
    quote_currency: Annotated[str, Field(pattern=r"^[A-Z0-9]{2,10}$")] | None = None
    """the quote currency when the page implies it (24.kg: `USD 84.80` is in KGS)"""
    decimal_separator: Literal[".", ","] = "."
    """`","` reads `529,96`; the other one, or a space, may group thousands (`12,850.50`,
    `12.850,50`)"""
    json_query: str | None = None
    """the response is a JSON feed: a [JMESPath](https://jmespath.org) expression yielding objects
    with `pair` (or `base` and `quote`), `rate`, optionally `change_pct`, e.g.
    `"data.rates[*].{pair: symbol, rate: price}"` (docs/parser.md#json-sources); not with
    `selector` or `pattern`"""
    pairs: list[Pair] = []
    """only watch these pairs (`["TMT/USD"]`); empty = every pair on the page"""
    active: Annotated[ActiveWindow | None, DocDefault("always")] = None
    """a time window (`{ days = ["mon", ...], hours = "09:00-18:00", timezone = "Asia/Ashgabat"
    }`, keys below): check only then"""
    down_after: Annotated[int, Field(ge=1, le=10_000)] = 3
    """consecutive failed checks before `source_down` (1 to 10000)"""
    down_for: Duration | None = None
    """or: no good observation for this long (e.g. `"30m"`), every check since failing, whichever
    comes first: the `for` of the source. `down_after_time` is its older name and still works (set
    only one)"""
    max_jump_pct: Annotated[Decimal, Field(ge=0)] | None = Decimal(20)
    """a rate moving more than this many percent in one check is re-fetched at once to confirm it
    before it alerts (see *Implausible jumps* below); at least 0"""
    max_bytes: Annotated[int, Field(ge=1024, le=100_000_000)] = 5_000_000
    """pages larger than this are refused (checked while streaming); 1024 to 100000000"""

    @model_validator(mode="before")
    @classmethod
    def _down_after_time_is_down_for(cls, data: Any) -> Any:
        """``down_after_time`` (the first spelling) is an alias of ``down_for``."""
        if isinstance(data, dict) and "down_after_time" in data:
            if "down_for" in data:
                raise ValueError(
                    "down_after_time: is the old name of down_for; set only one of them"
                )
            data = dict(data)
            data["down_for"] = data.pop("down_after_time")
        return data

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("expected an http:// or https:// URL")
        return value

    @field_validator("interval")
    @classmethod
    def _min_interval(cls, value: float) -> float:
        if value < 1:
            raise ValueError("must be at least 1 second")
        return value

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> TargetConfig:
        # as Prometheus refuses scrape_timeout > scrape_interval: a check that may outlast its
        # interval holds the target past its next run
        if self.timeout is not None and not 0 < self.timeout <= self.interval:
            raise ValueError(
                f"timeout: must be more than 0 and at most interval ({self.interval:g}s)"
            )
        return self

    @model_validator(mode="after")
    def _jitter_below_interval(self) -> TargetConfig:
        if self.jitter is not None and self.jitter >= self.interval:
            raise ValueError("jitter: must be less than interval")
        return self

    @field_validator("selector")
    @classmethod
    def _css(cls, value: str | None) -> str | None:
        if value is not None:
            check_selector(value)  # raises ValueError: invalid CSS selector '...'
        return value

    @field_validator("json_query")
    @classmethod
    def _jmespath(cls, value: str | None) -> str | None:
        if value is not None:
            compile_query(value)  # raises ValueError with the reason
        return value

    @model_validator(mode="after")
    def _grammar_compiles(self) -> TargetConfig:
        self.grammar()  # raises ValueError with the reason, reported under this target
        if self.json_query is not None:
            for key in ("selector", "pattern"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}: not used with json_query (a JSON feed has no markup)")
        return self

    def feed_query(self) -> FeedQuery | None:
        """The compiled ``json_query`` (None without one)."""
        return None if self.json_query is None else compile_query(self.json_query)

    def grammar(self) -> Grammar:
        return Grammar.from_config(
            pattern=self.pattern,
            quote_currency=self.quote_currency,
            decimal_separator=self.decimal_separator,
        )

    @property
    def effective_jitter(self) -> float:
        return self.interval / 10 if self.jitter is None else self.jitter


# --- [[rules]] -------------------------------------------------------------------------------

CHANGE_KINDS = (
    EventKind.RATE_CHANGED,
    EventKind.CHANGE_PCT_CHANGED,
    EventKind.PAIR_ADDED,
    EventKind.PAIR_REMOVED,
)


#: the outage kinds a rule's ``for`` and ``repeat_interval`` apply to
CONDITION_KINDS = frozenset({EventKind.SOURCE_DOWN, EventKind.PARSE_FAILED})


class RuleConfig(Strict):
    """One ``[[rules]]`` entry: what it matches, what it sends where, and (optionally) a threshold.

    The timing keys (see docs/alerts.md for their timelines): ``for`` holds an alert back until its
    condition has held on every check for that long; ``repeat_interval`` re-sends a condition still
    going on; ``mute`` is when the rule's alerts are recorded as silenced instead of sent.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: Annotated[Name | None, DocDefault("`rule-N`")] = None
    """used in logs and in threshold events; unique"""
    events: Annotated[
        list[EventKind] | None,
        DocDefault('all kinds (`["threshold"]` for a threshold rule)'),
    ] = None
    """event kinds this rule routes"""
    targets: Annotated[list[str], DocDefault("all")] = []
    """target names"""
    pairs: Annotated[list[Pair], DocDefault("all")] = []
    """pairs (`"TMT/USD"`); events without a pair (`source_down`, ...) always match"""
    min_abs_change_pct: Decimal | None = None
    """threshold: the page's change % reaches ±X (X more than 0); re-arms when it falls back below
    `clear_at`"""
    above: Decimal | None = None
    """threshold: the rate rises above this level (at least 0); re-arms at or below `clear_at`"""
    below: Decimal | None = None
    """threshold: the rate falls below this level (more than 0); re-arms at or above `clear_at`"""
    min_move_pct: Decimal | None = None
    """threshold: the rate moved X% (more than 0) since the **last alerted** rate"""
    clear_at: Annotated[Decimal | None, DocDefault("the level")] = None
    """where a fired `above` / `below` / `min_abs_change_pct` re-arms (hysteresis: `above = 0.2870`,
    `clear_at = 0.2860`); only with one of them"""
    send_resolved: bool = False
    """send a `threshold_cleared` event when a fired level re-arms"""
    hold: Duration = Field(default=0.0, alias="for")
    """the condition (a threshold, or the source down / without a ticker) must hold on every check
    for this long before the rule alerts"""
    repeat_interval: Duration = 0.0
    """re-send a condition still going on (a level still crossed, a source still down) at this
    interval, marked as a reminder; `0`: never"""
    mute: ActiveWindow | None = None
    """a time window (`{ days = [...], hours = "22:00-07:00", timezone = "..." }`, keys below): the
    rule's alerts are recorded as silenced instead of sent then"""
    sinks: list[str]
    """names of `[sinks.NAME]` (at least one)"""
    cooldown: Duration = 0.0
    """after this rule routed an event for a (target, pair), it routes none for that pair for this
    long"""
    on_first_observation: bool = False
    """evaluate thresholds on the very first observation too (otherwise it is a silent baseline)"""

    @property
    def bands(self) -> dict[str, Decimal]:
        """The band levels the rule sets, by key: ``above``, ``below``, ``min_abs_change_pct``."""
        levels = {
            "above": self.above,
            "below": self.below,
            "min_abs_change_pct": self.min_abs_change_pct,
        }
        return {key: value for key, value in levels.items() if value is not None}

    @property
    def has_threshold(self) -> bool:
        return bool(self.bands) or self.min_move_pct is not None

    @property
    def kinds(self) -> frozenset[EventKind]:
        if self.events is not None:
            return frozenset(self.events)
        if self.has_threshold:
            if self.send_resolved:
                return frozenset({EventKind.THRESHOLD, EventKind.THRESHOLD_CLEARED})
            return frozenset({EventKind.THRESHOLD})
        return frozenset(EventKind)

    @property
    def conditions(self) -> frozenset[EventKind]:
        """The outage kinds this rule routes (what ``for`` and ``repeat_interval`` apply to)."""
        return self.kinds & CONDITION_KINDS

    @field_validator("sinks")
    @classmethod
    def _some_sink(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one sink")
        return value

    def problems(self, where: str) -> list[str]:
        """What makes this rule contradict itself, one line each, prefixed with ``where``."""
        out: list[str] = []
        if self.above is not None and self.above < 0:
            out.append(f"{where}.above: cannot be negative (every rate is above it)")
        if self.below is not None and self.below <= 0:
            out.append(f"{where}.below: must be above 0 (no rate is below it: it can never fire)")
        if self.min_abs_change_pct is not None and self.min_abs_change_pct <= 0:
            out.append(f"{where}.min_abs_change_pct: must be above 0 (every change reaches it)")
        if self.min_move_pct is not None and self.min_move_pct <= 0:
            out.append(f"{where}.min_move_pct: must be above 0")
        out += self._clear_at_problems(where)
        if self.send_resolved and not self.bands:
            out.append(
                f"{where}.send_resolved: needs above, below or min_abs_change_pct (a level that "
                "can clear)"
            )
        elif self.send_resolved and EventKind.THRESHOLD_CLEARED not in self.kinds:
            out.append(
                f"{where}.events: send_resolved = true sends 'threshold_cleared' events, which "
                "this rule does not route"
            )
        if self.hold > 0 and not (self.has_threshold or self.conditions):
            out.append(
                f"{where}.for: applies to a threshold, source_down or parse_failed; this rule "
                "has none of them"
            )
        if self.repeat_interval > 0 and not (self.bands or self.conditions):
            out.append(
                f"{where}.repeat_interval: reminds of a condition still going on (a band "
                "threshold, source_down, parse_failed); this rule has none"
            )
        if self.mute is not None and self.mute.always:
            out.append(f"{where}.mute: mutes the rule at every moment of the week")
        return out

    def _clear_at_problems(self, where: str) -> list[str]:
        clear, bands = self.clear_at, self.bands
        if clear is None:
            return []
        if not bands:
            return [f"{where}.clear_at: needs one of above, below or min_abs_change_pct"]
        if len(bands) > 1:
            return [
                f"{where}.clear_at: is ambiguous with several of above, below and "
                "min_abs_change_pct; write one rule per level"
            ]
        ((key, level),) = bands.items()
        wrong = {
            "above": (clear > level, f"must be at or below above ({level}): it re-arms lower"),
            "below": (clear < level, f"must be at or above below ({level}): it re-arms higher"),
            "min_abs_change_pct": (
                not 0 <= clear <= level,
                f"must be between 0 and min_abs_change_pct ({level})",
            ),
        }
        bad, message = wrong[key]
        return [f"{where}.clear_at: {message}"] if bad else []


# --- the whole -------------------------------------------------------------------------------


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MONITOR_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        frozen=True,
        nested_model_default_partial_update=True,
        use_attribute_docstrings=True,
    )

    monitor: MonitorSection = MonitorSection()
    """the daemon itself: its store, logs, endpoint and limits"""
    delivery: DeliverySection = DeliverySection()
    """the outbox: retries, dead letters, claims"""
    cluster: ClusterSection = ClusterSection()
    """several instances on one database (docs/high-availability.md)"""
    targets: list[TargetConfig] = []
    """the pages to watch, one `[[targets]]` table each"""
    rules: list[RuleConfig] = []
    """which events go to which sinks, one `[[rules]]` table each; every matching rule fires"""
    sinks: dict[Name, SinkConfig] = {}
    """where alerts go: `[sinks.NAME]` tables, each with a `type`"""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML document arrives as init kwargs; the environment and .env override it.
        return env_settings, dotenv_settings, init_settings

    @model_validator(mode="after")
    def _cross_references(self) -> Settings:
        problems: list[str] = []
        names = [t.name for t in self.targets]
        for i, name in enumerate(names):
            if name in names[:i]:
                problems.append(f"targets[{i}].name: duplicate target name {name!r}")
        rule_names = self.rule_names()
        for i, rule in enumerate(self.rules):
            if rule_names[i] in rule_names[:i]:
                problems.append(f"rules[{i}].name: duplicate rule name {rule_names[i]!r}")
            if rule.has_threshold and EventKind.THRESHOLD not in rule.kinds:
                problems.append(
                    f"rules[{i}].events: the rule defines a threshold but does not route "
                    "'threshold' events"
                )
            for sink in rule.sinks:
                if sink not in self.sinks:
                    problems.append(f"rules[{i}].sinks: no [sinks.{sink}] is configured")
            for target in rule.targets:
                if target not in names:
                    problems.append(f"rules[{i}].targets: no target is named {target!r}")
            problems += rule.problems(f"rules[{i}]")
            problems += self._never_fires(i, rule)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _never_fires(self, index: int, rule: RuleConfig) -> list[str]:
        """Why rule ``index`` can never send anything (one line), or nothing."""
        where = f"rules[{index}]"
        producible = set(EventKind)
        if not any(r.has_threshold for r in self.rules):
            producible.discard(EventKind.THRESHOLD)
        if not any(r.send_resolved and r.bands for r in self.rules):
            producible.discard(EventKind.THRESHOLD_CLEARED)
        if not rule.kinds & producible:
            kinds = ", ".join(sorted(rule.kinds))
            return [f"{where}.events: can never fire: no rule makes {kinds} events"]
        covered = [t for t in self.targets if not rule.targets or t.name in rule.targets]
        pair_only = rule.kinds <= PAIR_KINDS
        if rule.pairs and pair_only and covered and all(t.pairs for t in covered):
            watched = {p for t in covered for p in t.pairs}
            if not watched & set(rule.pairs):
                return [
                    f"{where}.pairs: can never fire: its targets watch only "
                    f"{', '.join(sorted(watched))}"
                ]
        return []

    def unrouted_targets(self) -> list[str]:
        """One line per target that no rule sends anything of (``validate`` refuses them; ``run``
        starts anyway, for a configuration that only records history)."""
        return [
            f"targets[{i}]: no rule routes any event of target {t.name!r}; add a [[rules]] entry "
            "for it"
            for i, t in enumerate(self.targets)
            if not any(not r.targets or t.name in r.targets for r in self.rules)
        ]

    def rule_name(self, index: int) -> str:
        return self.rules[index].name or f"rule-{index + 1}"

    def rule_names(self) -> list[str]:
        """Every rule's name, in order (``rule-N`` for a rule without one)."""
        return [self.rule_name(i) for i in range(len(self.rules))]

    def target(self, name: str) -> TargetConfig:
        for target in self.targets:
            if target.name == name:
                return target
        raise KeyError(name)


def _loc(loc: tuple[int | str, ...]) -> str:
    if len(loc) > 2 and loc[0] == "sinks":  # ("sinks", NAME, <the union's tag: its type>, ...)
        loc = loc[:2] + loc[3:]
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after[_grammar_compiles()]",) or part.startswith(
            ("function-", "tagged-union[")
        ):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = _loc(tuple(err["loc"]))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        msg = msg.removeprefix("Value error, ")
        for line in msg.splitlines():
            if re.match(r"^\w+(\[\d+\])?\.\w+: ", line):  # cross-references carry their path
                problems.append(line)
            elif err["loc"] and re.match(r"^[a-z_]+: ", line):  # a table's check names its key
                problems.append(f"{loc}.{line}")
            else:
                problems.append(f"{loc}: {line}")
    return problems


def config_path(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    """``--config PATH``, else ``MONITOR_CONFIG``, else ``config/monitor.toml``."""
    if explicit:
        return Path(explicit)
    if env.get("MONITOR_CONFIG"):
        return Path(env["MONITOR_CONFIG"])
    return DEFAULT_CONFIG


DEFAULT_SECRETS_DIR = Path("/run/secrets")
_SECRET_SECTIONS = ("monitor", "delivery", "sinks")


def read_secrets_dir(directory: Path) -> dict[str, Any]:
    """Docker secrets: a file ``monitor_sinks__team__webhook_url`` sets ``[sinks.team].webhook_url``.

    The names are the environment variables' (``MONITOR_SINKS__TEAM__WEBHOOK_URL``) in lower case;
    other files in the directory are ignored. Values are the files' contents, whitespace stripped.
    """
    found: dict[str, Any] = {}
    try:
        files = sorted(directory.iterdir())
    except OSError:
        return found
    for file in files:
        name = file.name.lower()
        if not name.startswith("monitor_") or not file.is_file():
            continue
        parts = name.removeprefix("monitor_").split("__")
        if parts[0] not in _SECRET_SECTIONS or len(parts) < 2 or not all(parts):
            continue
        try:
            value = file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            raise ConfigError([f"{file}: secret file cannot be read"]) from None
        node = found
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = value
    return found


#: top-level sections that are lists of tables: the environment addresses their entries by index
_LIST_SECTIONS = ("targets", "rules")
#: keys whose values are file-system paths (resolved against the configuration file's directory)
_PATH_KEY = re.compile(r"^(path|.+_(file|path|dir))$")
_SQLITE = "sqlite:///"


def _merge(
    base: dict[str, Any], extra: Mapping[str, Any], *, entries: bool = True
) -> dict[str, Any]:
    """``extra`` over ``base``, table by table; with ``entries``, a mapping over a list section
    overrides its entries by index (see :func:`_merge_entries`)."""
    out = dict(base)
    for key, value in extra.items():
        current = out.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            out[key] = _merge(current, value, entries=False)
        elif entries and key in _LIST_SECTIONS and isinstance(value, Mapping):
            out[key] = _merge_entries(key, current if isinstance(current, list) else [], value)
        else:
            out[key] = value
    return out


def _merge_entries(section: str, entries: list[Any], by_index: Mapping[str, Any]) -> list[Any]:
    """``MONITOR_TARGETS__0__INTERVAL=10s`` changes ``targets[0].interval`` (entries the file
    defines; it cannot add one). A value written as JSON (``'["TMT/USD"]'``) is decoded."""
    out = list(entries)
    problems = []
    for index, value in sorted(by_index.items()):
        if not index.isdigit() or int(index) >= len(out):
            problems.append(
                f"{section}[{index}]: no such entry to override (the configuration has "
                f"{len(out)} {section}; MONITOR_{section.upper()}__N__KEY changes entry N)"
            )
        elif isinstance(value, Mapping) and isinstance(out[int(index)], dict):
            out[int(index)] = _merge(out[int(index)], _decode_json_values(value))
        else:
            problems.append(f"{section}[{index}]: override one key, e.g. {section}[{index}].KEY")
    if problems:
        raise ConfigError(problems)
    return out


def _decode_json_values(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out[key] = _decode_json_values(value)
        elif isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value
        else:
            out[key] = value
    return out


def _resolve_paths(document: Any, base: Path) -> Any:
    """Relative paths written in the file, resolved against the file's directory: values of keys
    named ``path``, ``*_file``, ``*_path`` and ``*_dir``, and a relative ``sqlite:///`` database."""
    if isinstance(document, list):
        return [_resolve_paths(item, base) for item in document]
    if not isinstance(document, dict):
        return document
    return {key: _resolve_value(key, value, base) for key, value in document.items()}


def _resolve_value(key: str, value: Any, base: Path) -> Any:
    if isinstance(value, str) and value and _PATH_KEY.match(key):
        return value if Path(value).is_absolute() else os.path.normpath(base / value)
    if key == "database" and isinstance(value, str) and value.startswith(_SQLITE):
        path = value.removeprefix(_SQLITE)
        if path and path != ":memory:" and not Path(path).is_absolute():
            return _SQLITE + os.path.normpath(base / path)
        return value
    return _resolve_paths(value, base)


def _environment() -> dict[str, Any]:
    """``MONITOR_*`` variables over the ``.env`` file, nested at ``__``, as pydantic-settings
    reads them (``targets`` and ``rules`` entries keyed by their index)."""
    values: dict[str, Any] = {}
    for source in (DotEnvSettingsSource(Settings), EnvSettingsSource(Settings)):
        try:
            values = _merge(values, source(), entries=False)
        except SettingsError as exc:  # e.g. a complex value that is not JSON; names the field
            raise ConfigError([f"environment: {exc}"]) from None
    return values


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Read, merge and validate the configuration; raise ``ConfigError`` naming every bad key.

    Precedence, highest first: environment variables, ``.env``, the secrets directory
    (``MONITOR_SECRETS_DIR``, else ``/run/secrets``), the TOML file. Relative paths in the file
    resolve against the file's directory (see :func:`_resolve_paths`); values from the
    environment, ``.env`` and the defaults against the working directory. Entries of
    ``[[targets]]`` and ``[[rules]]`` are overridden by index: ``MONITOR_TARGETS__0__INTERVAL``.
    """
    env = os.environ if env is None else env
    file = config_path(path, env)
    try:
        document = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{file}: configuration file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{file}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{file}: invalid TOML: {exc}"]) from None
    document = _resolve_paths(document, file.absolute().parent)
    secrets_dir = Path(env.get("MONITOR_SECRETS_DIR") or DEFAULT_SECRETS_DIR)
    document = _merge(document, read_secrets_dir(secrets_dir))
    try:
        document = _merge(document, _environment())
        # The environment and .env are merged above (list entries included), so pydantic-settings
        # must not apply them again over the lists: no variable name can start with "=", and no
        # .env file is read a second time.
        return Settings(_env_prefix="=", _env_file=None, **document)
    except ValidationError as exc:
        raise ConfigError(_problems(exc)) from None


def secret_values(settings: Settings) -> list[str]:
    """Every secret value in the configuration, for the log redactor."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(settings)
    # a DSN's password alone can show up in a driver's message
    found.append(urlsplit(settings.monitor.database.get_secret_value()).password or "")
    return [s for s in found if s]
