"""The configuration file's JSON Schema, generated from the settings models (``config schema``).

Editors that read TOML with a schema (Even Better TOML / taplo, tombi) complete and check keys
with it; ``config/monitor.toml`` points at the copy in ``config/monitor.schema.json`` with a
``#:schema`` comment. Two things the models accept are not visible to pydantic's generator, so
they are added here:

- durations: a number of seconds *or* a string with a unit (``"250ms"``, ``"30s"``, ``"5m"``);
  a duration key's description ends with that hint;
- secrets from files: every single-value secret ``x`` may be given as ``x_file`` instead.

A secret's default is never printed (pydantic would show it masked anyway). The descriptions are
the models' attribute docstrings; :mod:`monitor.config_doc` renders the same knowledge (durations,
secrets, ``x_file``) as the tables of ``docs/configuration.md``.
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

DURATION_HINT = "seconds, or a number with a unit: 250ms, 30s, 5m, 1h, 7d"
DURATION_SCHEMA: JsonSchemaValue = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": DURATION_PATTERN.pattern},
    ],
    "description": DURATION_HINT,
}


class _Generator(GenerateJsonSchema):
    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        if schema["function"].get("function") is parse_duration:
            return dict(DURATION_SCHEMA)
        return super().function_before_schema(schema)


def _secret_string(prop: JsonSchemaValue) -> bool:
    return prop.get("type") == "string" and prop.get("format") == "password"


def is_secret(prop: JsonSchemaValue) -> bool:
    """Is this property a single-value secret (``SecretStr`` or ``SecretStr | None``)?"""
    return _secret_string(prop) or any(
        isinstance(item, dict) and _secret_string(item) for item in prop.get("anyOf", [])
    )


def holds_secrets(prop: JsonSchemaValue) -> bool:
    """Are this list's items or this table's values secrets (Apprise ``urls``, webhook ``headers``)?"""
    return any(_secret_string(prop.get(key) or {}) for key in ("items", "additionalProperties"))


def is_duration(prop: JsonSchemaValue) -> bool:
    """Is this property a duration (``Duration`` or ``Duration | None``)?"""
    anyof = prop.get("anyOf", [])
    return anyof == DURATION_SCHEMA["anyOf"] or any(
        isinstance(item, dict) and item.get("anyOf") == DURATION_SCHEMA["anyOf"] for item in anyof
    )


def _descriptions(node: Any) -> None:
    """Every description on one line (docstrings wrap), and every duration key's ending with
    :data:`DURATION_HINT`: the key's own description replaces the one :data:`DURATION_SCHEMA`
    carries (in place, recursively)."""
    if isinstance(node, list):
        for item in node:
            _descriptions(item)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("description"), str):
        node["description"] = " ".join(node["description"].split())
    for prop in (node.get("properties") or {}).values():
        if isinstance(prop, dict) and is_duration(prop):
            meaning = " ".join(prop.get("description", DURATION_HINT).split())
            prop["description"] = (
                meaning
                if meaning.endswith(DURATION_HINT)
                else f"{meaning}. Duration: {DURATION_HINT}"
            )
    for value in node.values():
        _descriptions(value)


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
            if not (isinstance(prop, dict) and is_secret(prop)):
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
    _descriptions(schema)
    schema["title"] = "ticker-monitor configuration (monitor.toml)"
    return {"$schema": SCHEMA_DIALECT, **schema}


def schema_text() -> str:
    """The schema as the committed file holds it (sorted keys, two-space indent, final newline)."""
    return json.dumps(config_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


__all__ = ["config_schema", "holds_secrets", "is_duration", "is_secret", "schema_text"]
