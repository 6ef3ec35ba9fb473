"""The building blocks of the configuration models: durations, names, strict models, secret files.

They live apart from :mod:`monitor.settings` so that the models owned by other modules (each sink's
``[sinks.NAME]`` model lives in its sink's module) can use them without importing the whole
configuration.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DURATION_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


#: the longest duration any setting takes: longer ones are mistakes (``1e18``), not intentions
MAX_DURATION = 366 * 86400.0


def parse_duration(value: object) -> float:
    """``30``, ``"30s"``, ``"5m"``, ``"1h"``, ``"7d"``, ``"250ms"`` -> seconds.

    Finite, not negative, and at most :data:`MAX_DURATION` (366 days); the error says which.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := DURATION_PATTERN.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError("expected a duration such as 30, '30s', '5m' or '1h'")
    if math.isnan(seconds):
        raise ValueError("expected a duration such as 30, '30s', '5m' or '1h', not nan")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_DURATION:
        raise ValueError("a duration can be at most 366d")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds as a configuration file writes them: ``10.0`` -> ``"10s"``, ``600`` -> ``"10m"``,
    ``0.25`` -> ``"250ms"``, ``0`` -> ``"0"`` (the largest unit that divides it; inverse of
    :func:`parse_duration`)."""
    if seconds == 0:
        return "0"
    for unit in ("d", "h", "m", "s", "ms"):
        count = seconds / _UNITS[unit]
        if count == int(count) and int(count) * _UNITS[unit] == seconds:
            return f"{int(count)}{unit}"
    return f"{Decimal(repr(seconds)):f}s"


Duration = Annotated[float, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Pair = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,10}/[A-Z0-9]{2,10}$")]


@dataclass(frozen=True, slots=True)
class DocDefault:
    """How the configuration reference writes a field's default when its value alone would not say
    it: one computed at run time (``Annotated[Duration | None, DocDefault("a tenth of
    `interval`")] = None``) or one that depends on other keys. Pydantic keeps it as metadata."""

    text: str


class Strict(BaseModel):
    """A configuration table: unknown keys are errors, values are frozen.

    A field's meaning is its attribute docstring (the string right below it): the JSON Schema's
    ``description`` and the configuration reference's (``docs/configuration.md``) meaning column.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def read_secret_files(data: Any, fields: tuple[str, ...]) -> Any:
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


Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")


def _clock_time(hour: int, minute: int, *, end: bool) -> time | None:
    """``HH:MM`` as a time; ``24:00`` only as an end (the end of the day); None if impossible."""
    if end and (hour, minute) == (24, 0):
        return time.max
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def _span_of(hours: str) -> tuple[time, time] | None:
    """``"09:00-18:00"`` as (start, end); None when it is not a span of real times of day."""
    m = _HOURS.match(hours)
    if m is None:
        return None
    start = _clock_time(int(m[1]), int(m[2]), end=False)
    end = _clock_time(int(m[3]), int(m[4]), end=True)
    return None if start is None or end is None else (start, end)


class ActiveWindow(Strict):
    """Some days, between two times of day, in an IANA time zone (``22:00-06:00`` spans midnight).

    Parsed once, when the configuration is read; :meth:`contains` only compares.
    """

    days: Annotated[list[Day], DocDefault("every day")] = list(DAYS)
    """the days of the week, as `"mon"`, `"tue"`, ... `"sun"`"""
    hours: str = "00:00-24:00"
    """`HH:MM-HH:MM`, from `00:00` to `24:00` (the end of the day); `22:00-06:00` spans midnight
    (each moment's own day must be one of `days`)"""
    timezone: str = "UTC"
    """the IANA time zone the days and hours are in, e.g. `"Asia/Ashgabat"`"""
    _span: tuple[time, time] = PrivateAttr()
    _zone: ZoneInfo = PrivateAttr()

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        if _span_of(value) is None:
            raise ValueError("expected HH:MM-HH:MM between 00:00 and 24:00, e.g. 09:00-18:00")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    def model_post_init(self, context: Any, /) -> None:
        span = _span_of(self.hours)
        assert span is not None  # noqa: S101 -- the field validator refused anything else
        self._span = span
        self._zone = ZoneInfo(self.timezone)

    def contains(self, moment: datetime) -> bool:
        """Is the aware ``moment`` inside the window (its day and time in the window's zone)?"""
        local = moment.astimezone(self._zone)
        if DAYS[local.weekday()] not in self.days:
            return False
        start, end = self._span
        clock = local.time().replace(tzinfo=None)
        if start <= end:
            return start <= clock < end
        return clock >= start or clock < end  # across midnight, e.g. 22:00-06:00

    @property
    def always(self) -> bool:
        """Does the window cover every moment of the week?"""
        return set(self.days) == set(DAYS) and self._span == (time(0), time.max)
