"""``ticker-monitor validate``: the older name of ``config check`` (kept for scripts)."""

from __future__ import annotations

from monitor.cli import config
from monitor.cli.common import Subparsers, add_config


def register(sub: Subparsers) -> None:
    validate = sub.add_parser(
        "validate",
        help="check the configuration and exit (the same as `config check`)",
        description="Load and validate the configuration and build every sink, sending "
        "nothing; the same as `ticker-monitor config check`.",
    )
    add_config(validate)
    validate.set_defaults(func=config.run_check)
