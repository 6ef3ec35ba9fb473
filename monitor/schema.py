"""The configuration file's JSON Schema, generated from the settings models (``config schema``).

Editors that read TOML with a schema (Even Better TOML / taplo, tombi) complete and check keys
with it; ``config/monitor.toml`` points at the copy in ``config/monitor.schema.json`` with a
``#:schema`` comment. Two things the models accept are not visible to pydantic's generator, so
they are added here:

- durations: a number of seconds *or* a string with a unit (``"250ms"``, ``"30s"``, ``"5m"``);
- secrets from files: every single-value secret ``x`` may be given as ``x_file`` instead.

A secret's default is never printed (pydantic would show it masked anyway).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from monitor import __version__
from monitor.config_types import DURATION_PATTERN, parse_duration
from monitor.settings import Settings

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

DURATION_SCHEMA: JsonSchemaValue = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": DURATION_PATTERN.pattern},
    ],
    "description": "seconds, or a number with a unit: 250ms, 30s, 5m, 1h, 7d",
}


class _Generator(GenerateJsonSchema):
    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        if schema["function"].get("function") is parse_duration:
            return dict(DURATION_SCHEMA)
        return super().function_before_schema(schema)


def _is_secret(prop: JsonSchemaValue) -> bool:
    return prop.get("type") == "string" and prop.get("format") == "password"


def _secret_files(node: Any) -> None:
    """Add ``x_file`` next to every single-value secret ``x`` (in place, recursively)."""
    if isinstance(node, list):
        for item in node:
            _secret_files(item)
        return
    if not isinstance(node, dict):
        return
    props = node.get("properties")
    if isinstance(props, dict):
        for name, prop in list(props.items()):
            if not (isinstance(prop, dict) and _is_secret(prop)):
                continue
            prop.pop("default", None)
            props[f"{name}_file"] = {
                "type": "string",
                "description": f"a file whose contents are {name} (whitespace stripped)",
            }
            required = node.get("required", [])
            if name in required:
                required.remove(name)
                if not required:
                    node.pop("required")
                node.setdefault("allOf", []).append(
                    {"anyOf": [{"required": [name]}, {"required": [f"{name}_file"]}]}
                )
    for value in node.values():
        _secret_files(value)


def _stable_defaults(node: Any) -> None:
    """Drop defaults that would make the file change without a change of keys: a section's
    default (its own keys list theirs) and any default naming this release (the User-Agent)."""
    if isinstance(node, list):
        for item in node:
            _stable_defaults(item)
        return
    if not isinstance(node, dict):
        return
    default = node.get("default")
    if "$ref" in node or (isinstance(default, str) and f"/{__version__}" in default):
        node.pop("default", None)
    for value in node.values():
        _stable_defaults(value)


def config_schema() -> dict[str, Any]:
    """The JSON Schema of ``monitor.toml``."""
    schema = Settings.model_json_schema(by_alias=True, schema_generator=_Generator)
    _secret_files(schema)
    _stable_defaults(schema)
    schema["title"] = "ticker-monitor configuration (monitor.toml)"
    return {"$schema": SCHEMA_DIALECT, **schema}


def schema_text() -> str:
    """The schema as the committed file holds it (sorted keys, two-space indent, final newline)."""
    return json.dumps(config_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


__all__ = ["config_schema", "schema_text"]
