"""Configuration: a TOML file overridden by ``MONITOR_<SECTION>__<KEY>`` variables and a ``.env`` file.

``load_settings`` is the only way in. It never raises anything but ``ConfigError``, whose ``problems``
name each bad key by its path (``targets[0].interval: ...``) and never echo a secret's value.

Secrets are ``SecretStr``; each secret field ``x`` may instead be given as ``x_file``, a path whose
contents are the secret (the Docker and systemd credentials convention).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from datetime import datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from monitor import __version__
from monitor.errors import ConfigError
from monitor.models import PAIR_KINDS, EventKind
from monitor.parse import Grammar

DEFAULT_CONFIG = Path("config/monitor.toml")

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: object) -> float:
    """``30``, ``"30s"``, ``"5m"``, ``"1h"``, ``"7d"``, ``"250ms"`` -> seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError("expected a duration such as 30, '30s', '5m' or '1h'")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Pair = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,10}/[A-Z0-9]{2,10}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _read_secret_files(data: Any, fields: tuple[str, ...]) -> Any:
    """Turn ``x_file = "/run/secrets/x"`` into ``x = <contents>`` for each secret field ``x``."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for name in fields:
        path = data.pop(f"{name}_file", None)
        if path is None:
            continue
        try:
            data[name] = Path(str(path)).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"{name}_file: cannot read {path}: {exc.strerror}") from None
    return data


# --- [monitor] -------------------------------------------------------------------------------


class MonitorSection(_Strict):
    database: SecretStr = SecretStr("sqlite:///var/state.db")
    log_format: Literal["console", "json", "auto"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: ``host:port`` of the health and metrics endpoint; ``""`` turns it off
    listen: str = "127.0.0.1:9464"
    grace_period: Duration = 10.0
    history_retention: Duration = 30 * 86400.0
    max_per_host: Annotated[int, Field(ge=1, le=64)] = 2
    max_concurrent_checks: Annotated[int, Field(ge=1, le=1024)] = 16
    user_agent: str = f"ticker-monitor/{__version__} (+https://github.com/ticker-monitor)"

    @model_validator(mode="before")
    @classmethod
    def _files(cls, data: Any) -> Any:
        return _read_secret_files(data, ("database",))

    @field_validator("database")
    @classmethod
    def _known_scheme(cls, value: SecretStr) -> SecretStr:
        dsn = value.get_secret_value()
        if not dsn.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("expected sqlite:///PATH or postgresql://... (value not shown)")
        return value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value and not re.match(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$", value):
            raise ValueError("expected host:port, e.g. 127.0.0.1:9464, or '' to turn it off")
        return value


# --- [delivery] ------------------------------------------------------------------------------


class DeliverySection(_Strict):
    #: a row still undelivered this long after it was written is dead-lettered
    max_age: Duration = 24 * 3600.0
    #: 0 means retry until ``max_age``
    max_attempts: Annotated[int, Field(ge=0)] = 0
    backoff_initial: Duration = 1.0
    backoff_max: Duration = 600.0
    lease: Duration = 60.0
    batch_size: Annotated[int, Field(ge=1, le=500)] = 50


# --- [[targets]] -----------------------------------------------------------------------------

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ActiveWindow(_Strict):
    """When a target is checked: some days, between two times, in an IANA time zone."""

    days: list[Day] = list(_DAYS)
    hours: str = "00:00-24:00"
    timezone: str = "UTC"

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        m = re.match(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$", value)
        if not m or int(m[1]) > 24 or int(m[3]) > 24 or int(m[2]) > 59 or int(m[4]) > 59:
            raise ValueError("expected HH:MM-HH:MM, e.g. 09:00-18:00")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    def contains(self, now: datetime) -> bool:
        """Is ``now`` inside the window: one of its days and between its hours, in its time zone?

        A window whose end is before its start runs across midnight (``22:00-07:00``): both its
        evening and its small hours count, each on the day it falls on.
        """
        local = now.astimezone(ZoneInfo(self.timezone))
        if _DAYS[local.weekday()] not in self.days:
            return False
        start_s, end_s = self.hours.split("-")
        start = time.fromisoformat(start_s)
        end = time.max if end_s == "24:00" else time.fromisoformat(end_s)
        clock = local.time().replace(tzinfo=None)
        if start <= end:
            return start <= clock < end
        return clock >= start or clock < end

    @property
    def always(self) -> bool:
        """Does the window cover every moment of the week?"""
        return set(self.days) == set(_DAYS) and self.hours == "00:00-24:00"


class TargetConfig(_Strict):
    name: Name
    url: str
    interval: Duration = 300.0
    #: random delay added to each run (default: a tenth of the interval)
    jitter: Duration | None = None
    #: the overall deadline of one fetch, retries included
    timeout: Duration = 30.0
    #: quick retries (jittered backoff) inside one check before it counts as failed
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    headers: dict[str, str] = {}
    user_agent: str | None = None
    selector: str | None = None
    pattern: str | None = None
    quote_currency: Annotated[str, Field(pattern=r"^[A-Z0-9]{2,10}$")] | None = None
    decimal_separator: Literal[".", ","] = "."
    #: only these pairs (``TMT/USD``); empty means every pair on the page
    pairs: list[Pair] = []
    active: ActiveWindow | None = None
    #: consecutive failed checks before ``source_down``
    down_after: Annotated[int, Field(ge=1)] = 3
    #: or: no good observation for this long, every check since failing (whichever comes first);
    #: ``down_after_time`` is the older spelling of the same key
    down_for: Duration | None = None
    #: a rate moving more than this in one check is re-fetched to confirm before it alerts
    max_jump_pct: Decimal | None = Decimal(20)
    max_bytes: Annotated[int, Field(ge=1024)] = 5_000_000

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
    def _jitter_below_interval(self) -> TargetConfig:
        if self.jitter is not None and self.jitter >= self.interval:
            raise ValueError("jitter: must be less than interval")
        return self

    @model_validator(mode="after")
    def _grammar_compiles(self) -> TargetConfig:
        self.grammar()  # raises ValueError with the reason, reported under this target
        return self

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


class RuleConfig(_Strict):
    """One ``[[rules]]`` entry: what it matches, what it sends where, and (optionally) a threshold.

    The timing keys (see docs/alerts.md for their timelines): ``for`` holds an alert back until its
    condition has held on every check for that long; ``repeat_interval`` re-sends a condition still
    going on; ``mute`` is when the rule's alerts are recorded as silenced instead of sent.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: Name | None = None
    events: list[EventKind] | None = None
    targets: list[str] = []
    pairs: list[Pair] = []
    #: threshold: fire when abs(page change %) reaches this; re-arm when it falls below clear_at
    min_abs_change_pct: Decimal | None = None
    #: threshold: fire when the rate rises above this level; re-arm at or below clear_at
    above: Decimal | None = None
    #: threshold: fire when the rate falls below this level; re-arm at or above clear_at
    below: Decimal | None = None
    #: threshold: fire when the rate moved this many percent since the last *alerted* rate
    min_move_pct: Decimal | None = None
    #: the level at which a fired band threshold re-arms (default: its own level)
    clear_at: Decimal | None = None
    #: send a ``threshold_cleared`` event when a fired band threshold re-arms
    send_resolved: bool = False
    #: the condition must hold on every check for this long before the rule alerts (``for``)
    hold: Duration = Field(default=0.0, alias="for")
    #: re-send a condition still going on (a band, an outage) at this interval; 0: never
    repeat_interval: Duration = 0.0
    #: when the rule's alerts are recorded as silenced instead of sent (e.g. at night)
    mute: ActiveWindow | None = None
    sinks: list[str]
    #: after a rule sent an event for a (target, pair), hold further ones this long
    cooldown: Duration = 0.0
    #: also fire threshold checks on the very first observation (otherwise it is a silent baseline)
    on_first_observation: bool = False

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


# --- [sinks.NAME] ----------------------------------------------------------------------------


class _SinkBase(_Strict):
    #: override the message title / body (``string.Template`` syntax: ``$pair``, ``$new_rate`` ...)
    title_template: str | None = None
    body_template: str | None = None
    #: one send may take at most this long
    timeout: Duration = 15.0


class ConsoleSink(_SinkBase):
    type: Literal["console"]


class FileSink(_SinkBase):
    type: Literal["file"]
    path: Path


class SlackSink(_SinkBase):
    type: Literal["slack"]
    webhook_url: SecretStr
    #: client-side rate limit: at least this long between two posts to the webhook
    min_interval: Duration = 1.0

    @model_validator(mode="before")
    @classmethod
    def _files(cls, data: Any) -> Any:
        return _read_secret_files(data, ("webhook_url",))

    @field_validator("webhook_url")
    @classmethod
    def _https(cls, value: SecretStr) -> SecretStr:
        if not re.match(r"^https?://", value.get_secret_value()):
            raise ValueError("expected an http(s):// webhook URL (value not shown)")
        return value


class EmailSink(_SinkBase):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    type: Literal["email"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    tls: Literal["starttls", "implicit", "none"]
    allow_insecure: bool = False
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(alias="from")
    to: list[str]
    cc: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _files(cls, data: Any) -> Any:
        return _read_secret_files(data, ("password",))

    @model_validator(mode="after")
    def _tls_policy(self) -> EmailSink:
        loopback = self.host in ("localhost", "::1") or self.host.startswith("127.")
        if self.tls == "none" and not (loopback or self.allow_insecure):
            raise ValueError(
                "tls = 'none' sends mail in clear text; allowed only to a loopback host "
                "or with allow_insecure = true"
            )
        if self.password is not None and self.username is None:
            raise ValueError("password is set but username is not")
        if not self.to:
            raise ValueError("to: name at least one recipient")
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return {"implicit": 465, "starttls": 587, "none": 25}[self.tls]


class WebhookSink(_SinkBase):
    type: Literal["webhook"]
    url: SecretStr
    #: shared secret for the ``X-Signature-256: sha256=<hex>`` HMAC header
    secret: SecretStr | None = None
    headers: dict[str, SecretStr] = {}
    min_interval: Duration = 0.0

    @model_validator(mode="before")
    @classmethod
    def _files(cls, data: Any) -> Any:
        return _read_secret_files(data, ("url", "secret"))

    @field_validator("url")
    @classmethod
    def _http(cls, value: SecretStr) -> SecretStr:
        if not re.match(r"^https?://", value.get_secret_value()):
            raise ValueError("expected an http:// or https:// URL (value not shown)")
        return value


class AppriseSink(_SinkBase):
    type: Literal["apprise"]
    urls: list[SecretStr]

    @field_validator("urls")
    @classmethod
    def _some(cls, value: list[SecretStr]) -> list[SecretStr]:
        if not value:
            raise ValueError("name at least one Apprise URL")
        return value


SinkConfig = Annotated[
    ConsoleSink | FileSink | SlackSink | EmailSink | WebhookSink | AppriseSink,
    Field(discriminator="type"),
]


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
    )

    monitor: MonitorSection = MonitorSection()
    delivery: DeliverySection = DeliverySection()
    targets: list[TargetConfig] = []
    rules: list[RuleConfig] = []
    sinks: dict[Name, SinkConfig] = {}

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
            # cross-reference problems carry their own key path
            problems.append(line if re.match(r"^\w+(\[\d+\])?\.\w+: ", line) else f"{loc}: {line}")
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


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Read, merge and validate the configuration; raise ``ConfigError`` naming every bad key.

    Precedence, highest first: environment variables, ``.env``, the secrets directory
    (``MONITOR_SECRETS_DIR``, else ``/run/secrets``), the TOML file.
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
    secrets_dir = Path(env.get("MONITOR_SECRETS_DIR") or DEFAULT_SECRETS_DIR)
    document = _merge(document, read_secrets_dir(secrets_dir))
    try:
        return Settings(**document)
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
