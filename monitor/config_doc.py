"""The tables of ``docs/configuration.md``, generated from the settings models (``make schema``).

The document's regions ``<!-- generated: NAME -->`` ... ``<!-- end generated -->`` each hold one
section's table (key, default, meaning) and are rewritten from the models; the hand-written prose
around them stays as it is. A key's meaning is its field's attribute docstring, which is also its
JSON Schema ``description``. What the schema decides -- which keys are durations, which are secrets
(their defaults are never shown) and which also take an ``x_file`` -- is asked of the generated
schema (:mod:`monitor.schema`), so the reference and the schema cannot disagree.

``python -m monitor.config_doc [PATH]`` rewrites the file; a test compares it with :func:`render`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue

from monitor import __version__
from monitor.config_types import ActiveWindow, DocDefault, format_duration
from monitor.errors import MonitorError
from monitor.schema import config_schema, holds_secrets, is_duration, is_secret
from monitor.settings import (
    ClusterSection,
    DeliverySection,
    MonitorSection,
    RuleConfig,
    TargetConfig,
)
from monitor.sinks import SinkSettings
from monitor.sinks.registry import SINK_TYPES

DOC_PATH = Path("docs/configuration.md")
END = "<!-- end generated -->"
_REGION = re.compile(
    r"(?P<begin><!-- generated: (?P<name>[a-z_]+) -->\n)(?P<body>.*?)(?P<end>" + END + ")",
    re.DOTALL,
)
#: ``docs/x.md`` or ``docs/x.md#anchor`` in a description: a link from docs/configuration.md
_DOC_REFERENCE = re.compile(r"(?<![\w/])(?<!\]\()docs/(?P<file>[\w.-]+\.md)(?P<anchor>#[\w-]+)?")

#: the tables of plain sections, by region name
SECTION_MODELS: Mapping[str, type[BaseModel]] = {
    "monitor": MonitorSection,
    "delivery": DeliverySection,
    "cluster": ClusterSection,
    "targets": TargetConfig,
    "rules": RuleConfig,
    "window": ActiveWindow,
}
#: the region listing the keys every sink has, then each registered sink type's own
SINKS_REGION = "sinks"


def _toml(value: Any) -> str:
    """A default as a TOML file writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")  # 20, not 2E+1
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    text = str(value).replace(f"/{__version__}", "/VERSION")  # stable across releases
    return json.dumps(text, ensure_ascii=False)


def _default(field: FieldInfo, prop: JsonSchemaValue) -> str:
    written = [m.text for m in field.metadata if isinstance(m, DocDefault)]
    if written:
        return written[0]
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "none"
    if value and (is_secret(prop) or holds_secrets(prop)):
        return "—"  # a secret's default is never shown (an empty table of them is just `{}`)
    if is_duration(prop):
        return f"`{_toml(format_duration(value))}`" if value else "`0`"
    return f"`{_toml(value)}`"


def _meaning(key: str, field: FieldInfo, props: dict[str, JsonSchemaValue]) -> str:
    text = " ".join((field.description or "").split())
    text = _DOC_REFERENCE.sub(lambda m: f"[docs/{m['file']}]({m['file']}{m['anchor'] or ''})", text)
    prop = props[key]
    if is_secret(prop):
        text += ". **Secret**" if text else "**Secret**"
        if f"{key}_file" in props:
            text += f"; or `{key}_file`: a file holding it"
    elif holds_secrets(prop):
        text += ". The values are **secrets**" if text else "The values are **secrets**"
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _rows(
    model: type[BaseModel], props: dict[str, JsonSchemaValue], skip: frozenset[str]
) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        if name in skip:
            continue
        cells = (f"`{key}`", _default(field, props[key]), _meaning(key, field, props))
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return rows


def _table(rows: list[str]) -> str:
    return "\n".join(["| key | default | meaning |", "| --- | --- | --- |", *rows]) + "\n"


def _sinks(defs: Mapping[str, Any]) -> str:
    common = frozenset(SinkSettings.model_fields)
    first = next(iter(SINK_TYPES.values())).config
    parts = [
        "### Every sink\n",
        _table(_rows(SinkSettings, defs[first.__name__]["properties"], frozenset())),
    ]
    for name, kind in SINK_TYPES.items():
        model = kind.config
        about = " ".join((model.__doc__ or "").split())
        rows = _rows(model, defs[model.__name__]["properties"], common | {"type"})
        parts.append(f'### `type = "{name}"`\n\n{about}\n')
        if rows:
            parts.append(_table(rows))
    return "\n".join(parts)


def tables() -> dict[str, str]:
    """Every generated region's markdown, by region name."""
    defs = config_schema()["$defs"]
    out = {
        name: _table(_rows(model, defs[model.__name__]["properties"], frozenset()))
        for name, model in SECTION_MODELS.items()
    }
    out[SINKS_REGION] = _sinks(defs)
    return out


def render(document: str) -> str:
    """``document`` with every generated region rewritten from the models.

    Raises ``MonitorError`` naming a region the document lacks or one no model fills.
    """
    wanted = tables()
    found = [m["name"] for m in _REGION.finditer(document)]
    missing = [name for name in wanted if name not in found]
    unknown = [name for name in found if name not in wanted]
    if missing or unknown:
        problems = [f"no <!-- generated: {name} --> ... {END} region" for name in missing]
        problems += [f"<!-- generated: {name} -->: no such table" for name in unknown]
        raise MonitorError("; ".join(problems))
    return _REGION.sub(lambda m: m["begin"] + wanted[m["name"]] + m["end"], document)


def main(argv: list[str]) -> int:
    """Rewrite the reference (``argv[0]``, else docs/configuration.md) in place."""
    path = Path(argv[0]) if argv else DOC_PATH
    try:
        document = path.read_text(encoding="utf-8")
        updated = render(document)
    except (OSError, MonitorError) as exc:
        print(f"config_doc: {path}: {exc}", file=sys.stderr)
        return 1
    if updated != document:
        path.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
