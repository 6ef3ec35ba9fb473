"""``ticker-monitor config check|show|schema``: validate, print the effective configuration with
its secrets masked, print the file's JSON Schema. ``validate`` is ``config check``."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from monitor.cli.common import EXIT_OK, Subparsers, add_config, settings_of
from monitor.errors import ConfigError
from monitor.redact import REDACTED

if TYPE_CHECKING:
    from monitor.settings import Settings

#: what a secret reads as in ``config show`` (the one marker of monitor.redact)
MASK = REDACTED


def register(sub: Subparsers) -> None:
    config = sub.add_parser(
        "config",
        help="check, show or describe the configuration",
        description="Check the configuration, show the effective one (secrets masked), or print "
        "the JSON Schema of the file for editors.",
    )
    actions = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate the configuration and build every sink (exit 0 ok, 2 invalid)",
        description="Load and validate the configuration (every key, every rule: one that "
        "contradicts itself or can never fire, a target no rule routes) and build every sink, "
        "sending nothing. Exit 0 when valid; 2 with one line per problem when not.",
    )
    add_config(check)
    check.set_defaults(func=run_check)
    show = actions.add_parser(
        "show",
        help="print the effective configuration, secrets masked",
        description="Print the configuration as the daemon would run it: the file, the "
        "secrets directory, .env and the environment merged, defaults filled in, relative paths "
        "resolved. Secrets, header values and URL credentials and queries are masked.",
    )
    add_config(show)
    show.add_argument(
        "--format", choices=["toml", "json"], default="toml", help="output format (toml)"
    )
    show.set_defaults(func=run_show)
    schema = actions.add_parser(
        "schema",
        help="print the JSON Schema of the configuration file",
        description="Print the JSON Schema of monitor.toml (for editors: config/monitor.toml "
        "points at config/monitor.schema.json with a '#:schema' comment).",
    )
    schema.set_defaults(func=run_schema)


def run_check(args: argparse.Namespace) -> int:
    from monitor.app import open_sinks  # noqa: PLC0415 -- start-up time

    settings = settings_of(args)
    unrouted = settings.unrouted_targets()
    if unrouted:  # `run` starts anyway (to record history); a new setup more likely forgot a rule
        raise ConfigError(unrouted)

    async def build() -> None:  # builds every sink (e.g. parses Apprise URLs), sends nothing
        async with open_sinks(settings):
            pass

    asyncio.run(build())
    print(
        f"configuration ok: {len(settings.targets)} target(s), {len(settings.rules)} rule(s), "
        f"{len(settings.sinks)} sink(s)"
    )
    return EXIT_OK


def mask_url(url: str) -> str:
    """A URL with its password and every query value masked (they often carry tokens)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        netloc = f"{user}:{MASK}@" + netloc.rpartition("@")[2]
    elif "@" in netloc:
        netloc = f"{MASK}@" + netloc.rpartition("@")[2]
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode([(k, MASK) for k, _ in pairs], safe="[]")
    fragment = MASK if parts.fragment else ""
    if parts.scheme and url.startswith(f"{parts.scheme}://"):
        # written out: urlunsplit drops an empty authority (sqlite:////var/x.db -> sqlite://var/x.db)
        tail = (f"?{query}" if query else "") + (f"#{fragment}" if fragment else "")
        return f"{parts.scheme}://{netloc}{parts.path}{tail}"
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


#: how pydantic writes a ``SecretStr`` in a JSON dump
_PYDANTIC_MASK = "**********"


def _one_marker(value: Any) -> Any:
    """``value`` with pydantic's mask of each secret replaced by the project's one marker."""
    if isinstance(value, dict):
        return {k: _one_marker(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_one_marker(v) for v in value]
    return MASK if value == _PYDANTIC_MASK else value


def masked(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, every secret masked.

    Secret fields are masked by pydantic; on top of that, target URLs lose their credentials and
    query values, target header values are masked (``Authorization`` ...), and the database URL
    shows everything but its password.
    """
    data: dict[str, Any] = _one_marker(
        settings.model_dump(mode="json", by_alias=True, exclude_none=True)
    )
    data["monitor"]["database"] = mask_url(settings.monitor.database.get_secret_value())
    for target in data["targets"]:
        target["url"] = mask_url(target["url"])
        target["headers"] = dict.fromkeys(target.get("headers", {}), MASK)
    return data


def run_show(args: argparse.Namespace) -> int:
    data = masked(settings_of(args))
    if args.format == "json":
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        import tomli_w  # noqa: PLC0415 -- start-up time

        print(tomli_w.dumps(data), end="")
    return EXIT_OK


def run_schema(_: argparse.Namespace) -> int:
    from monitor.schema import schema_text  # noqa: PLC0415 -- start-up time

    print(schema_text(), end="")
    return EXIT_OK
