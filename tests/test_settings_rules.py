"""The rule keys of the configuration (clear_at, send_resolved, for, repeat_interval, mute), the
``down_for`` spelling of ``down_after_time``, and the checks that refuse rules that can never fire
or contradict themselves -- one line each."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from monitor.errors import ConfigError
from monitor.models import EventKind
from monitor.settings import ActiveWindow, load_settings

HEAD = """
[[targets]]
name = "timesca"
url = "https://timesca.com/"

[sinks.c]
type = "console"
"""


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "monitor.toml"
    path.write_text(HEAD + text, encoding="utf-8")
    return load_settings(path, env={})


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return list(info.value.problems)


def rule(body: str) -> str:
    return f'[[rules]]\nsinks = ["c"]\n{body}\n'


def test_the_new_rule_keys_load(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        rule(
            'name = "tmt-high"\nabove = 0.2870\nclear_at = 0.2860\nsend_resolved = true\n'
            'for = "2m"\nrepeat_interval = "1h"\n'
            'mute = { days = ["sat", "sun"], hours = "22:00-07:00", timezone = "Asia/Ashgabat" }'
        ),
    )
    (r,) = settings.rules  # type: ignore[attr-defined]
    assert (r.clear_at, r.send_resolved, r.hold, r.repeat_interval) == (
        Decimal("0.2860"),
        True,
        120.0,
        3600.0,
    )
    assert r.kinds == frozenset({EventKind.THRESHOLD, EventKind.THRESHOLD_CLEARED})
    assert r.mute == ActiveWindow(
        days=["sat", "sun"], hours="22:00-07:00", timezone="Asia/Ashgabat"
    )


def test_down_after_time_is_the_old_name_of_down_for(tmp_path: Path) -> None:
    old = load(
        tmp_path,
        rule("") + '[[targets]]\nname = "b"\nurl = "https://b.example/"\ndown_after_time = "30m"\n',
    )
    assert old.targets[1].down_for == 1800.0  # type: ignore[attr-defined]
    new = load(
        tmp_path,
        rule("") + '[[targets]]\nname = "b"\nurl = "https://b.example/"\ndown_for = "30m"\n',
    )
    assert new.targets[1].down_for == 1800.0  # type: ignore[attr-defined]
    both = problems(
        tmp_path,
        rule("") + '[[targets]]\nname = "b"\nurl = "https://b.example/"\n'
        'down_for = "30m"\ndown_after_time = "20m"\n',
    )
    assert both == ["targets[1].down_after_time: is the old name of down_for; set only one of them"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("above = -1", "rules[0].above: cannot be negative (every rate is above it)"),
        ("below = 0", "rules[0].below: must be above 0 (no rate is below it: it can never fire)"),
        (
            "min_abs_change_pct = -0.5",
            "rules[0].min_abs_change_pct: must be above 0 (every change reaches it)",
        ),
        ("min_move_pct = 0", "rules[0].min_move_pct: must be above 0"),
        (
            "above = 0.287\nclear_at = 0.288",
            "rules[0].clear_at: must be at or below above (0.287): it re-arms lower",
        ),
        (
            "below = 0.285\nclear_at = 0.284",
            "rules[0].clear_at: must be at or above below (0.285): it re-arms higher",
        ),
        (
            "min_abs_change_pct = 1\nclear_at = 1.5",
            "rules[0].clear_at: must be between 0 and min_abs_change_pct (1)",
        ),
        ("clear_at = 1", "rules[0].clear_at: needs one of above, below or min_abs_change_pct"),
        (
            "above = 1\nbelow = 0.5\nclear_at = 0.7",
            "rules[0].clear_at: is ambiguous with several of above, below and min_abs_change_pct; "
            "write one rule per level",
        ),
        (
            "min_move_pct = 1\nsend_resolved = true",
            "rules[0].send_resolved: needs above, below or min_abs_change_pct (a level that can clear)",
        ),
        (
            'above = 1\nsend_resolved = true\nevents = ["threshold"]',
            "rules[0].events: send_resolved = true sends 'threshold_cleared' events, which this "
            "rule does not route",
        ),
        (
            'events = ["rate_changed"]\nfor = "2m"',
            "rules[0].for: applies to a threshold, source_down or parse_failed; this rule has none of them",
        ),
        (
            'min_move_pct = 1\nrepeat_interval = "1h"',
            "rules[0].repeat_interval: reminds of a condition still going on (a band threshold, "
            "source_down, parse_failed); this rule has none",
        ),
        ("mute = {}", "rules[0].mute: mutes the rule at every moment of the week"),
        (
            'events = ["threshold"]',
            "rules[0].events: can never fire: no rule makes threshold events",
        ),
        (
            'events = ["threshold_cleared"]',
            "rules[0].events: can never fire: no rule makes threshold_cleared events",
        ),
    ],
)
def test_a_rule_that_contradicts_itself_or_never_fires_is_one_line(
    tmp_path: Path, body: str, expected: str
) -> None:
    assert problems(tmp_path, rule(body)) == [expected]


def test_a_rule_whose_pairs_no_target_watches_never_fires(tmp_path: Path) -> None:
    text = (
        '[[targets]]\nname = "b"\nurl = "https://b.example/"\npairs = ["KGS/USD"]\n'
        + rule('targets = ["b"]\npairs = ["TMT/USD"]\nevents = ["rate_changed"]')
        + rule("")
    )
    assert problems(tmp_path, text) == [
        "rules[0].pairs: can never fire: its targets watch only KGS/USD"
    ]
    # with an outage kind the rule can still fire: it is fine
    load(tmp_path, text.replace('events = ["rate_changed"]', 'events = ["source_down"]'))


def test_valid_combinations_pass(tmp_path: Path) -> None:
    load(
        tmp_path,
        rule('events = ["source_down", "source_recovered"]\nfor = "30m"\nrepeat_interval = "1h"')
        + rule("above = 0.287\nclear_at = 0.287")  # clear_at at the level: the default
        + rule("min_abs_change_pct = 1\nclear_at = 0")
        + rule('events = ["threshold", "threshold_cleared"]')  # a catch-all for thresholds
        + rule("below = 0.28\nsend_resolved = true"),
    )


def test_a_target_no_rule_routes_is_reported_apart(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        '[[targets]]\nname = "b"\nurl = "https://b.example/"\n' + rule('targets = ["timesca"]'),
    )
    assert settings.unrouted_targets() == [  # type: ignore[attr-defined]
        "targets[1]: no rule routes any event of target 'b'; add a [[rules]] entry for it"
    ]


@pytest.mark.parametrize(
    ("hours", "days", "moment", "inside"),
    [
        ("22:00-07:00", ["mon"], datetime(2025, 5, 12, 23, 0, tzinfo=UTC), True),  # Monday night
        ("22:00-07:00", ["mon"], datetime(2025, 5, 12, 3, 0, tzinfo=UTC), True),  # Monday 03:00
        ("22:00-07:00", ["mon"], datetime(2025, 5, 13, 3, 0, tzinfo=UTC), False),  # Tuesday 03:00
        ("22:00-07:00", ["mon"], datetime(2025, 5, 12, 12, 0, tzinfo=UTC), False),
        ("09:00-18:00", ["mon"], datetime(2025, 5, 12, 18, 0, tzinfo=UTC), False),  # end excluded
        ("00:00-24:00", ["mon"], datetime(2025, 5, 12, 23, 59, tzinfo=UTC), True),
    ],
)
def test_mute_windows(hours: str, days: list[str], moment: datetime, inside: bool) -> None:
    assert ActiveWindow(days=days, hours=hours).contains(moment) is inside  # type: ignore[arg-type]
