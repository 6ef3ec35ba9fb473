"""Configuration: the TOML file, environment overrides, secrets from files, and error messages."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from monitor.app import plans_for
from monitor.config_types import parse_duration
from monitor.errors import ConfigError
from monitor.settings import beyond_loopback, listen_address, load_settings

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = """
[[targets]]
name = "t"
url = "http://127.0.0.1:1/"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "monitor.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    return list(info.value.problems)


def test_shipped_config_loads() -> None:
    settings = load_settings(ROOT / "config" / "monitor.toml")
    assert [t.name for t in settings.targets] == ["timesca"]
    assert settings.targets[0].url == "https://timesca.com/"
    # relative paths in a file resolve against its directory: config/../var is the repo's var/
    assert settings.monitor.database.get_secret_value() == f"sqlite:///{ROOT / 'var/state.db'}"
    assert settings.sinks["console"].type == "console"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(30, 30.0), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("2d", 172800.0), ("250ms", 0.25)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_defaults_fill_a_minimal_file(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL))
    target = settings.targets[0]
    assert target.interval == 300.0
    assert target.effective_jitter == 30.0
    assert target.down_after == 3
    assert target.max_jump_pct == Decimal(20)
    assert settings.monitor.listen == "127.0.0.1:9464"


def test_unknown_key_is_named_with_its_path(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + 'intervl = "5m"\n')
    assert found == ["targets[0].intervl: unknown key"]


def test_bad_values_are_each_named(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
[monitor]
log_level = "loud"
[[targets]]
name = "t"
url = "ftp://example"
interval = "soon"
""",
    )
    assert any(p.startswith("monitor.log_level:") for p in found)
    assert any(p.startswith("targets[0].url:") for p in found)
    assert any(p.startswith("targets[0].interval:") for p in found)
    assert len(found) == 3


def test_missing_required_key(tmp_path: Path) -> None:
    assert problems(tmp_path, '[[targets]]\nname = "t"\n') == [
        "targets[0].url: required key is missing"
    ]


def test_bad_pattern_names_the_target(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + 'pattern = "(?P<rate>["\n')
    assert len(found) == 1
    assert found[0].startswith("targets[0]")
    assert "invalid regular expression" in found[0]


def test_rule_referring_to_unknown_sink(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + '[[rules]]\nsinks = ["slack"]\n')
    assert found == ["rules[0].sinks: no [sinks.slack] is configured"]


def test_sink_type_discriminates(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + '[sinks.x]\ntype = "pager"\n')
    assert len(found) == 1
    assert found[0].startswith("sinks.x")


def test_secret_value_is_never_echoed(tmp_path: Path) -> None:
    secret = "not-a-url-s3cr3t-value"
    found = problems(tmp_path, MINIMAL + f'[sinks.s]\ntype = "slack"\nwebhook_url = "{secret}"\n')
    assert found
    assert all(secret not in p for p in found)


def test_insecure_smtp_refused_unless_loopback(tmp_path: Path) -> None:
    base = MINIMAL + '[sinks.m]\ntype = "email"\ntls = "none"\nfrom = "a@b.c"\nto = ["d@e.f"]\n'
    assert problems(tmp_path, base + 'host = "mail.example.org"\n')
    settings = load_settings(write(tmp_path, base + 'host = "127.0.0.1"\n'))
    assert settings.sinks["m"].type == "email"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_MONITOR__LOG_LEVEL", "debug")
    monkeypatch.setenv("MONITOR_SINKS__TEAM__WEBHOOK_URL", "https://hooks.example/T1/B2/xyz")
    text = MINIMAL + '[sinks.team]\ntype = "slack"\n'
    settings = load_settings(write(tmp_path, text))
    assert settings.monitor.log_level == "debug"
    sink = settings.sinks["team"]
    assert sink.type == "slack"
    assert sink.webhook_url.get_secret_value() == "https://hooks.example/T1/B2/xyz"


def test_secret_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "webhook"
    secret.write_text("https://hooks.example/T1/B2/fromfile\n", encoding="utf-8")
    text = MINIMAL + f'[sinks.team]\ntype = "slack"\nwebhook_url_file = "{secret}"\n'
    sink = load_settings(write(tmp_path, text)).sinks["team"]
    assert sink.type == "slack"
    assert sink.webhook_url.get_secret_value() == "https://hooks.example/T1/B2/fromfile"
    assert "fromfile" not in repr(sink)


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MINIMAL)
    monkeypatch.setenv("MONITOR_CONFIG", str(path))
    assert load_settings().targets[0].name == "t"


@pytest.mark.parametrize(
    ("text", "needle"),
    [("[[targets]\n", "invalid TOML"), (None, "not found")],
)
def test_unreadable_files(tmp_path: Path, text: str | None, needle: str) -> None:
    path = tmp_path / "monitor.toml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=needle):
        load_settings(path)


def test_cli_reports_config_errors_with_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + 'intervl = "5m"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "validate", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "ticker-monitor: config error: targets[0].intervl: unknown key"
    assert "Traceback" not in proc.stderr


def test_rule_names_are_unique(tmp_path: Path) -> None:
    text = MINIMAL + '[sinks.c]\ntype = "console"\n'
    text += '[[rules]]\nname = "a"\nsinks = ["c"]\n[[rules]]\nname = "a"\nsinks = ["c"]\n'
    assert problems(tmp_path, text) == ["rules[1].name: duplicate rule name 'a'"]


def test_threshold_rule_must_route_threshold_events(tmp_path: Path) -> None:
    text = MINIMAL + '[sinks.c]\ntype = "console"\n'
    text += '[[rules]]\nabove = 1\nevents = ["rate_changed"]\nsinks = ["c"]\n'
    (problem,) = problems(tmp_path, text)
    assert problem.startswith("rules[0].events: the rule defines a threshold")


def test_jitter_must_be_below_the_interval(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, MINIMAL + 'interval = "1m"\njitter = "1m"\n')
    assert problem == "targets[0].jitter: must be less than interval"


def test_a_check_ends_before_the_next_is_due(tmp_path: Path) -> None:
    # as Prometheus refuses scrape_timeout > scrape_interval
    for timeout in ('"11s"', "0"):
        text = MINIMAL + f'interval = "10s"\ntimeout = {timeout}\n'
        assert problems(tmp_path, text) == [
            "targets[0].timeout: must be more than 0 and at most interval (10s)"
        ]
    plans = plans_for(load_settings(write(tmp_path, MINIMAL + 'interval = "10s"\n')))
    assert plans[0].fetch_policy.timeout == 10.0  # the default follows a short interval
    plans = plans_for(load_settings(write(tmp_path, MINIMAL)))
    assert plans[0].fetch_policy.timeout == 30.0  # and is 30 s for a longer one
    plans = plans_for(load_settings(write(tmp_path, MINIMAL + 'timeout = "1m"\n')))
    assert plans[0].fetch_policy.timeout == 60.0


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (
            "[[targets]]\nmax_jump_pct = -5",
            "targets[1].max_jump_pct: Input should be greater than or equal to 0",
        ),
        (
            "[[targets]]\nmax_jump_pct = nan",
            "targets[1].max_jump_pct: Input should be a finite number",
        ),
        (
            "[[targets]]\ndown_after = 9223372036854775807",
            "targets[1].down_after: Input should be less than or equal to 10000",
        ),
        ("[[targets]]\nmax_bytes = 1e400", "targets[1].max_bytes: Input should be a finite number"),
        (
            "[[targets]]\nmax_bytes = 200_000_000",
            "targets[1].max_bytes: Input should be less than or equal to 100000000",
        ),
        (
            "[delivery]\nmax_attempts = 9223372036854775807",
            "delivery.max_attempts: Input should be less than or equal to 1000",
        ),
        ("[delivery]\nbackoff_initial = 0", "delivery.backoff_initial: must be more than 0"),
        (
            '[delivery]\nbackoff_initial = "1m"\nbackoff_max = "1s"',
            "delivery.backoff_max: must be at least backoff_initial (60s)",
        ),
        ('[cluster]\nlease = "500ms"', "cluster.lease: must be from 1s to 5m"),
        (
            '[cluster]\nlease = "30s"\nforget_after = "45s"',
            "cluster.forget_after: must be at least twice the lease (30s)",
        ),
        (
            '[[rules]]\nsinks = ["c"]\nmin_move_pct = 0\n[sinks.c]\ntype = "console"',
            "rules[0].min_move_pct: must be above 0",
        ),
        ("[[rules]]\nsinks = []\nabove = inf", "rules[0].above: Input should be a finite number"),
        (
            '[sinks.c]\ntype = "console"\ntimeout = "1h"',
            "sinks.c.timeout: must be more than 0 and at most 120s",
        ),
    ],
)
def test_numbers_are_finite_and_bounded_with_the_bound_in_the_message(
    tmp_path: Path, line: str, problem: str
) -> None:
    if line.startswith("[[targets]]"):
        line = line.replace("[[targets]]", '[[targets]]\nname = "u"\nurl = "http://127.0.0.1:2/"')
    assert problem in problems(tmp_path, MINIMAL + line + "\n")


def test_secrets_directory_like_docker_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "monitor_sinks__team__webhook_url").write_text(
        "https://hooks.example/T1/B2/dir\n", encoding="utf-8"
    )
    (secrets / "monitor_monitor__database").write_text("sqlite:///var/x.db", encoding="utf-8")
    (secrets / "unrelated_token").write_text("ignored", encoding="utf-8")
    monkeypatch.setenv("MONITOR_SECRETS_DIR", str(secrets))
    text = MINIMAL + '[sinks.team]\ntype = "slack"\nwebhook_url = "https://from.toml/x"\n'
    settings = load_settings(write(tmp_path, text))
    sink = settings.sinks["team"]
    assert sink.type == "slack"
    assert sink.webhook_url.get_secret_value() == "https://hooks.example/T1/B2/dir"
    assert settings.monitor.database.get_secret_value() == "sqlite:///var/x.db"
    # the environment still wins over the directory
    monkeypatch.setenv("MONITOR_SINKS__TEAM__WEBHOOK_URL", "https://hooks.example/T1/B2/env")
    sink = load_settings(write(tmp_path, text)).sinks["team"]
    assert sink.type == "slack"
    assert sink.webhook_url.get_secret_value() == "https://hooks.example/T1/B2/env"


def test_a_store_url_nothing_can_open_is_refused_without_echoing_it(tmp_path: Path) -> None:
    for url in ("mysql://u:hunter2@h/x", "redis://:hunter2@h/0", "x"):
        found = problems(tmp_path, f'[monitor]\ndatabase = "{url}"\n{MINIMAL}')
        assert len(found) == 1
        assert found[0].startswith("monitor.database: no store can open")
        assert "sqlite://" in found[0]
        assert "postgresql://" in found[0]
        assert "hunter2" not in found[0]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("inf", "a duration can be at most 366d"),
        ("1e18", "a duration can be at most 366d"),
        ('"400d"', "a duration can be at most 366d"),
        ("nan", "expected a duration such as 30, '30s', '5m' or '1h', not nan"),
        ("-1", "a duration cannot be negative"),
    ],
)
def test_durations_are_finite_and_bounded(tmp_path: Path, value: str, message: str) -> None:
    for key in ("interval", "timeout"):
        assert problems(tmp_path, MINIMAL + f"{key} = {value}\n") == [
            f"targets[0].{key}: {message}"
        ]
    found = problems(tmp_path, f"[monitor]\nhistory_retention = {value}\n{MINIMAL}")
    assert found == [f"monitor.history_retention: {message}"]


@pytest.mark.parametrize("hours", ["00:00-24:30", "24:00-06:00", "9:00-18:00", "10:60-11:00"])
def test_impossible_active_hours_are_refused_at_load(tmp_path: Path, hours: str) -> None:
    found = problems(tmp_path, MINIMAL + f'active = {{ hours = "{hours}" }}\n')
    assert found == [
        "targets[0].active.hours: expected HH:MM-HH:MM between 00:00 and 24:00, e.g. 09:00-18:00"
    ]


def test_relative_paths_in_the_file_resolve_against_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "hook").write_text("https://hooks.example/T1/B2/rel\n", encoding="utf-8")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    text = (
        '[monitor]\ndatabase = "sqlite:///state/db.sqlite"\n'
        + MINIMAL
        + '[sinks.audit]\ntype = "file"\npath = "../alerts.jsonl"\n'
        + '[sinks.team]\ntype = "slack"\nwebhook_url_file = "hook"\n'
        + '[sinks.abs]\ntype = "file"\npath = "/var/log/alerts.jsonl"\n'
    )
    settings = load_settings(write(conf, text))
    assert settings.monitor.database.get_secret_value() == f"sqlite:///{conf / 'state/db.sqlite'}"
    assert settings.sinks["audit"].path == tmp_path / "alerts.jsonl"  # type: ignore[union-attr]
    assert settings.sinks["team"].webhook_url.get_secret_value().endswith("/rel")  # type: ignore[union-attr]
    assert settings.sinks["abs"].path == Path("/var/log/alerts.jsonl")  # type: ignore[union-attr]
    # the environment is not in the file: its relative paths stay relative to the working dir
    monkeypatch.setenv("MONITOR_MONITOR__DATABASE", "sqlite:///here.db")
    assert load_settings(write(conf, text)).monitor.database.get_secret_value() == (
        "sqlite:///here.db"
    )


def test_environment_overrides_list_entries_by_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (
        MINIMAL
        + '[[targets]]\nname = "u"\nurl = "http://127.0.0.1:2/"\n'
        + '[sinks.c]\ntype = "console"\n[[rules]]\nname = "r"\nsinks = ["c"]\n'
    )
    monkeypatch.setenv("MONITOR_TARGETS__0__INTERVAL", "10s")
    monkeypatch.setenv("MONITOR_TARGETS__1__PAIRS", '["TMT/USD"]')
    monkeypatch.setenv("MONITOR_TARGETS__1__ACTIVE__HOURS", "09:00-18:00")
    monkeypatch.setenv("MONITOR_RULES__0__COOLDOWN", "1m")
    settings = load_settings(write(tmp_path, text))
    first, second = settings.targets
    assert (first.name, first.interval, first.url) == ("t", 10.0, "http://127.0.0.1:1/")
    assert (second.name, second.interval, second.pairs) == ("u", 300.0, ["TMT/USD"])
    assert second.active is not None
    assert second.active.hours == "09:00-18:00"
    assert settings.rules[0].cooldown == 60.0
    assert settings.rules[0].sinks == ["c"]

    monkeypatch.setenv("MONITOR_TARGETS__2__INTERVAL", "10s")
    (problem,) = problems(tmp_path, text)
    assert problem.startswith("targets[2]: no such entry to override (the configuration has 2")
    monkeypatch.delenv("MONITOR_TARGETS__2__INTERVAL")
    monkeypatch.setenv("MONITOR_TARGETS__0__INTERVAL", "soon")
    (problem,) = problems(tmp_path, text)
    assert problem.startswith("targets[0].interval: expected a duration")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://monitor:hunter2@127.0.0.1/monitor",
        "postgres://monitor:hunter2@db.internal:5433/monitor?sslmode=verify-full",
    ],
)
def test_a_postgresql_url_is_accepted(tmp_path: Path, url: str) -> None:
    settings = load_settings(write(tmp_path, f'[monitor]\ndatabase = "{url}"\n{MINIMAL}'))
    assert settings.monitor.database.get_secret_value() == url
    assert "hunter2" not in repr(settings.monitor)


@pytest.mark.parametrize(
    ("listen", "reason"),
    [
        ("0:9464", "'0' is not an IP address written out in full"),
        ("0x0:9464", "'0x0' is not an IP address written out in full"),
        ("127.1:9464", "'127.1' is not an IP address written out in full"),
        ("monitor.example:9464", "'monitor.example' is not an IP address written out in full"),
        ("::1:9464", "expected host:port"),
        ("[127.0.0.1]:9464", "only an IPv6 address is written in brackets"),
        ("127.0.0.1:99999", "port 99999: expected 0 to 65535"),
        ("127.0.0.1", "expected host:port"),
    ],
)
def test_a_listen_address_is_written_out_in_full(tmp_path: Path, listen: str, reason: str) -> None:
    found = problems(tmp_path, f'[monitor]\nlisten = "{listen}"\n{MINIMAL}')
    assert len(found) == 1
    assert found[0].startswith(f"monitor.listen: {reason}")


@pytest.mark.parametrize(
    ("listen", "beyond"),
    [
        ("127.0.0.1:9464", False),
        ("[::1]:9464", False),
        ("localhost:9464", False),
        ("127.0.0.2:0", False),
        ("0.0.0.0:9464", True),
        ("[::]:9464", True),
        ("192.0.2.7:9464", True),
    ],
)
def test_binding_beyond_loopback_is_possible_when_written_out(
    tmp_path: Path, listen: str, beyond: bool
) -> None:
    settings = load_settings(write(tmp_path, f'[monitor]\nlisten = "{listen}"\n{MINIMAL}'))
    host, _ = listen_address(settings.monitor.listen)
    assert beyond_loopback(host) is beyond
