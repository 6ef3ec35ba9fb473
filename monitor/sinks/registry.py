"""Every kind of sink, by its ``type``, and how the configured ones are built.

:data:`SINK_TYPES` is the registry: each sink module exports a ``SINK_TYPE`` (its settings model and
its factory), and this tuple lists them. :data:`SinkConfig` -- the model of one ``[sinks.NAME]``
table, discriminated by ``type`` -- is derived from it, so a new sink is one module and one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from monitor.sinks import (
    Sink,
    SinkDeps,
    SinkSettings,
    SinkType,
    apprise,
    console,
    email,
    file,
    slack,
    webhook,
)

__all__ = ["SINK_TYPES", "SinkConfig", "build_sinks"]

SINK_TYPES: Mapping[str, SinkType[Any]] = {
    t.name: t
    for t in (
        console.SINK_TYPE,
        file.SINK_TYPE,
        slack.SINK_TYPE,
        email.SINK_TYPE,
        webhook.SINK_TYPE,
        apprise.SINK_TYPE,
    )
}

if TYPE_CHECKING:
    SinkConfig = SinkSettings
else:
    # a union built from the registry: mypy cannot follow it, pydantic validates and documents
    # it (JSON Schema) as a tagged union on ``type``
    SinkConfig = Annotated[
        Union[tuple(t.config for t in SINK_TYPES.values())],  # noqa: UP007 -- built at run time
        Field(discriminator="type"),
    ]


async def build_sinks(configs: Mapping[str, SinkSettings], deps: SinkDeps) -> dict[str, Sink]:
    """Every configured sink by name; raise ``ConfigError`` naming ``sinks.NAME`` for one that
    cannot be built (the ones built before it are closed first)."""
    built: dict[str, Sink] = {}
    try:
        for name, config in configs.items():
            kind = SINK_TYPES[str(getattr(config, "type", ""))]
            built[name] = kind.create(name, config, deps)
    except BaseException:
        for sink in built.values():
            await sink.aclose()
        raise
    return built
