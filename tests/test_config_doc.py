"""docs/configuration.md's tables are generated from the settings models, and kept current."""

from __future__ import annotations

import re
import subprocess
import sys
import typing
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from monitor.config_doc import END, render, tables
from monitor.config_types import MAX_DURATION, format_duration, parse_duration
from monitor.errors import MonitorError
from monitor.schema import config_schema, is_duration, is_secret
from monitor.settings import Settings
from monitor.sinks import SinkSettings
from monitor.sinks.registry import SINK_TYPES

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"
ROW = re.compile(r"^\| `(?P<key>[^`]+)` \| (?P<default>.*?) \| (?P<meaning>.*) \|$")


def _tables(document: str) -> list[dict[str, tuple[str, str]]]:
    """Every key/default/meaning table of a markdown document: key -> (default, meaning)."""
    found: list[dict[str, tuple[str, str]]] = []
    current: dict[str, tuple[str, str]] | None = None
    for line in document.splitlines():
        if line == "| key | default | meaning |":
            current = {}
            found.append(current)
        elif current is not None and (m := ROW.match(line)):
            current[m["key"]] = (m["default"], m["meaning"])
        elif not line.startswith("|"):
            current = None
    return found


def _keys(model: type[BaseModel], *, without: frozenset[str] = frozenset()) -> set[str]:
    return {f.alias or n for n, f in model.model_fields.items() if n not in without}


def _models_in(annotation: object) -> list[type[BaseModel]]:
    """The models an annotation holds (``X``, ``list[X]``, ``X | None``, ``Annotated[...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _every_model() -> set[type[BaseModel]]:
    """Every table a configuration file can hold, found by walking from ``Settings`` (the sinks'
    union included) -- independently of the generator's own list."""
    seen: set[type[BaseModel]] = set()
    todo = [m for f in Settings.model_fields.values() for m in _models_in(f.annotation)]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        todo += [m for f in model.model_fields.values() for m in _models_in(f.annotation)]
    return seen


def test_the_reference_is_generated_from_the_current_models() -> None:
    committed = DOC.read_text(encoding="utf-8")
    assert committed == render(committed), (
        "docs/configuration.md is stale: its tables differ from the settings models; "
        "run `make schema`"
    )


def test_every_field_of_every_model_has_a_row_in_the_reference() -> None:
    document = DOC.read_text(encoding="utf-8")
    tables_by_keys = [set(table) for table in _tables(document)]
    models = _every_model()
    sink_models = {kind.config for kind in SINK_TYPES.values()}
    assert sink_models <= models  # the walk reaches the registry's union
    common = set(SinkSettings.model_fields)
    assert common in tables_by_keys, "no table of the keys every sink has"
    for model in models:
        if model in sink_models:
            own = _keys(model, without=frozenset(common | {"type"}))
            kind = model.model_fields["type"].annotation
            (name,) = typing.get_args(kind)
            assert f'### `type = "{name}"`' in document, f"sink type {name!r} has no section"
            if own:
                assert own in tables_by_keys, f"sink type {name!r}: no table of {sorted(own)}"
        else:
            keys = _keys(model)
            assert keys in tables_by_keys, f"{model.__name__}: no table of {sorted(keys)}"
    for table in _tables(document):
        for key, (_, meaning) in table.items():
            assert meaning.strip(), f"`{key}` has no meaning"


def test_secrets_never_show_a_default_and_name_their_file_form() -> None:
    document = DOC.read_text(encoding="utf-8")
    rows = {k: v for table in _tables(document) for k, v in table.items()}
    secret_rows = {k: v for k, v in rows.items() if "**Secret**" in v[1]}
    assert set(secret_rows) == {"database", "webhook_url", "password", "url", "secret"}
    for key, (default, meaning) in secret_rows.items():
        assert default in ("—", "required", "none"), f"`{key}` shows a default: {default}"
        assert f"`{key}_file`" in meaning
    assert "sqlite:///var/state.db" not in rows["database"][0]
    assert "**secrets**" in rows["urls"][1]
    assert "**secrets**" in rows["headers"][1]


def test_durations_are_written_with_their_unit_and_computed_defaults_in_words() -> None:
    sections = tables()
    monitor, targets = _tables(sections["monitor"])[0], _tables(sections["targets"])[0]
    assert monitor["grace_period"][0] == '`"10s"`'
    assert monitor["history_retention"][0] == '`"30d"`'
    assert _tables(sections["delivery"])[0]["backoff_max"][0] == '`"10m"`'
    assert _tables(sections["rules"])[0]["cooldown"][0] == "`0`"
    assert monitor["user_agent"][0] == (
        '`"ticker-monitor/VERSION (+https://github.com/ticker-monitor)"`'
    )
    assert targets["jitter"][0] == "a tenth of `interval`"
    assert targets["max_jump_pct"][0] == "`20`"
    assert targets["name"][0] == "required"
    defs = config_schema()["$defs"]
    for model in _every_model():
        for key, prop in defs[model.__name__]["properties"].items():
            if is_duration(prop):
                assert prop["description"].endswith("250ms, 30s, 5m, 1h, 7d"), key


def test_render_rewrites_only_the_regions_and_names_a_missing_one() -> None:
    committed = DOC.read_text(encoding="utf-8")
    stale = committed.replace('| `grace_period` | `"10s"` |', "| `grace_period` | `10.0` |")
    stale = stale.replace("One table per page to watch.", "One table per page, by hand.")
    assert stale != committed
    fixed = render(stale)
    assert '| `grace_period` | `"10s"` |' in fixed
    assert "One table per page, by hand." in fixed  # the prose is the author's
    without = re.sub(r"<!-- generated: window -->.*?" + END, "", committed, flags=re.DOTALL)
    with pytest.raises(MonitorError, match="no <!-- generated: window -->"):
        render(without)
    with pytest.raises(MonitorError, match="generated: nosuch"):
        render(committed + f"\n<!-- generated: nosuch -->\n{END}\n")


def test_the_module_rewrites_a_stale_file_in_place(tmp_path: Path) -> None:
    committed = DOC.read_text(encoding="utf-8")
    doc = tmp_path / "configuration.md"
    doc.write_text(committed.replace("concurrent checks overall", "stale"), encoding="utf-8")
    run = [sys.executable, "-m", "monitor.config_doc", str(doc)]
    proc = subprocess.run(run, capture_output=True, text=True, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert doc.read_text(encoding="utf-8") == committed
    doc.write_text("# no regions\n", encoding="utf-8")
    proc = subprocess.run(run, capture_output=True, text=True, check=False, cwd=ROOT)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert "no <!-- generated: monitor -->" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_optional_secrets_take_a_file_form_in_the_schema() -> None:
    schema = config_schema()
    email = schema["$defs"]["EmailConfig"]["properties"]
    assert is_secret(email["password"])
    assert "default" not in email["password"]
    config = {
        "sinks": {
            "mail": {
                "type": "email",
                "host": "localhost",
                "tls": "none",
                "username": "u",
                "password_file": "/run/secrets/smtp",
                "from": "a@example.org",
                "to": ["b@example.org"],
            },
            "hook": {"type": "webhook", "url_file": "/x", "secret_file": "/y"},
        }
    }
    jsonschema.validate(config, schema)


@given(st.integers(min_value=0, max_value=int(MAX_DURATION * 1000)))
def test_format_duration_is_read_back_as_the_same_seconds(millis: int) -> None:
    seconds = millis / 1000
    written = format_duration(seconds)
    assert parse_duration(written) == seconds
    assert re.fullmatch(r"0|\d+(\.\d+)?(ms|s|m|h|d)", written)
