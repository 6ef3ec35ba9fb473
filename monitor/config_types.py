"""The building blocks of the configuration models: durations, names, strict models, secret files.

They live apart from :mod:`monitor.settings` so that the models owned by other modules (each sink's
``[sinks.NAME]`` model lives in its sink's module) can use them without importing the whole
configuration.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

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


class Strict(BaseModel):
    """A configuration table: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
