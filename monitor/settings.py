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
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from monitor import __version__
from monitor.config_types import ActiveWindow, Duration, Name, Pair, Strict, read_secret_files
from monitor.errors import ConfigError
from monitor.models import EventKind
from monitor.parse import Grammar
from monitor.sinks.registry import SinkConfig
from monitor.store.open import BACKENDS, scheme_of

DEFAULT_CONFIG = Path("config/monitor.toml")

# --- [monitor] -------------------------------------------------------------------------------


class MonitorSection(Strict):
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
        if value and not re.match(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$", value):
            raise ValueError("expected host:port, e.g. 127.0.0.1:9464, or '' to turn it off")
        return value


# --- [delivery] ------------------------------------------------------------------------------


class DeliverySection(Strict):
    #: a row still undelivered this long after it was written is dead-lettered
    max_age: Duration = 24 * 3600.0
    #: 0 means retry until ``max_age``
    max_attempts: Annotated[int, Field(ge=0, le=1000)] = 0
    backoff_initial: Duration = 1.0
    backoff_max: Duration = 600.0
    lease: Duration = 60.0
    batch_size: Annotated[int, Field(ge=1, le=500)] = 50

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


# --- [[targets]] -----------------------------------------------------------------------------


class TargetConfig(Strict):
    name: Name
    url: str
    interval: Duration = 300.0
    #: random delay added to each run (default: a tenth of the interval)
    jitter: Duration | None = None
    #: the overall deadline of one check's fetching, retries and the jump re-fetch included;
    #: at most ``interval`` (default: the shorter of 30 s and ``interval``)
    timeout: Duration | None = None
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
    down_after: Annotated[int, Field(ge=1, le=10_000)] = 3
    #: or: no successful check for this long (whichever comes first)
    down_after_time: Duration | None = None
    #: a rate moving more than this in one check is re-fetched to confirm before it alerts
    max_jump_pct: Annotated[Decimal, Field(ge=0)] | None = Decimal(20)
    max_bytes: Annotated[int, Field(ge=1024, le=100_000_000)] = 5_000_000

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


class RuleConfig(Strict):
    name: Name | None = None
    events: list[EventKind] | None = None
    targets: list[str] = []
    pairs: list[Pair] = []
    #: threshold: fire when abs(page change %) reaches this; re-arm when it falls below
    min_abs_change_pct: Annotated[Decimal, Field(ge=0)] | None = None
    #: threshold: fire when the rate rises above this level; re-arm when it is back at or below
    above: Decimal | None = None
    #: threshold: fire when the rate falls below this level; re-arm when it is back at or above
    below: Decimal | None = None
    #: threshold: fire when the rate moved this many percent since the last *alerted* rate
    min_move_pct: Annotated[Decimal, Field(gt=0)] | None = None
    sinks: list[str]
    #: after a rule sent an event for a (target, pair), hold further ones this long
    cooldown: Duration = 0.0
    #: also fire threshold checks on the very first observation (otherwise it is a silent baseline)
    on_first_observation: bool = False

    @property
    def has_threshold(self) -> bool:
        return any(
            v is not None
            for v in (self.min_abs_change_pct, self.above, self.below, self.min_move_pct)
        )

    @property
    def kinds(self) -> frozenset[EventKind]:
        if self.events is not None:
            return frozenset(self.events)
        if self.has_threshold:
            return frozenset({EventKind.THRESHOLD})
        return frozenset(EventKind)

    @field_validator("sinks")
    @classmethod
    def _some_sink(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one sink")
        return value


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
        rule_names = [self.rule_name(i) for i in range(len(self.rules))]
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
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def rule_name(self, index: int) -> str:
        return self.rules[index].name or f"rule-{index + 1}"

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
