"""What ``--help`` loads: the parser of every command, not the settings, the sinks or the store.

Each case is a new process (``sys.modules`` of this one holds everything the other tests loaded),
which prints what it imported after argparse has written the help.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from monitor.cli import COMMANDS
from tests.daemon_harness import ROOT, _env

#: the modules ``--help`` used to pull in (monitor.settings: every sink's model, aiohttp through
#: the email and HTTP sinks; pydantic; the store; the status page)
HEAVY = (
    "monitor.settings",
    "monitor.sinks",
    "monitor.sinks.registry",
    "monitor.store",
    "monitor.status",
    "monitor.fetch",
    "monitor.app",
    "aiohttp",
    "pydantic",
)

_PROBE = """
import json, sys
from monitor.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
else:
    code = None
sys.stdout.flush()
print("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def imported_by(*args: str) -> tuple[str, set[str]]:
    """The help text ``args`` print, and the modules loaded by then."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
        env=_env({"COLUMNS": "100"}),
    )
    text, _, last = proc.stdout.rstrip("\n").rpartition("\n")
    report = json.loads(last)
    assert report["code"] == 0, proc.stderr
    return text, set(report["modules"])


@pytest.mark.parametrize("command", [None, *(name for name, _ in COMMANDS)])
def test_help_imports_no_settings_sinks_or_store(command: str | None) -> None:
    args = ["--help"] if command is None else [command, "--help"]
    text, modules = imported_by(*args)
    assert text.startswith("usage: ticker-monitor")
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


@pytest.mark.parametrize(
    "args", [["config", "show"], ["silence", "add"], ["alerts", "retry"], ["rules", "test"]]
)
def test_an_action_help_imports_none_of_them_either(args: list[str]) -> None:
    _, modules = imported_by(*args, "--help")
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_top_level_help_still_lists_every_command() -> None:
    text, _ = imported_by("--help")
    for name, _module in COMMANDS:
        assert f"    {name} " in text or f"    {name}\n" in text, name
