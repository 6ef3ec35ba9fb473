"""The Compose files, by their shape (no Docker engine here): one SQLite instance in
``docker-compose.yml``; PostgreSQL and two instances sharing it in ``docker-compose.ha.yml``, the
database URL from a secret file, never from the file itself."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.config_types import parse_duration
from monitor.settings import MonitorSection, load_settings

ROOT = Path(__file__).resolve().parent.parent


def compose(name: str) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def values(node: object) -> list[str]:
    """Every scalar in a YAML tree, as text."""
    if isinstance(node, dict):
        return [v for item in node.values() for v in values(item)]
    if isinstance(node, list):
        return [v for item in node for v in values(item)]
    return [str(node)]


def test_the_single_instance_file_runs_one_daemon_on_sqlite() -> None:
    data = compose("docker-compose.yml")
    assert list(data["services"]) == ["monitor"]
    monitor = data["services"]["monitor"]
    assert "MONITOR_MONITOR__DATABASE" not in monitor.get("environment", {})  # the image's SQLite
    assert any(v.endswith(":/var/lib/ticker-monitor") for v in monitor["volumes"])
    assert parse_duration(monitor["stop_grace_period"]) > MonitorSection().grace_period


def test_the_ha_file_runs_postgresql_and_two_instances_with_names_and_ports_of_their_own() -> None:
    data = compose("docker-compose.ha.yml")
    services = data["services"]
    assert set(services) == {"postgres", "monitor-a", "monitor-b"}
    pg = services["postgres"]
    assert pg["image"].startswith("postgres:")
    assert pg["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "pg_isready" in pg["healthcheck"]["test"][1]
    (pg_secret,) = pg["secrets"]
    assert pg["environment"]["POSTGRES_PASSWORD_FILE"] == f"/run/secrets/{pg_secret}"
    instances = [services["monitor-a"], services["monitor-b"]]
    assert len({m["hostname"] for m in instances}) == 2
    ports = [m["ports"] for m in instances]
    assert all(
        len(p) == 1 and p[0].startswith("127.0.0.1:") and p[0].endswith(":9464") for p in ports
    )
    assert ports[0] != ports[1]
    for m in instances:
        assert m["image"] == "ticker-monitor:latest"
        assert m["build"] == "."
        assert m["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        (secret,) = m["secrets"]
        assert m["environment"]["MONITOR_MONITOR__DATABASE_FILE"] == f"/run/secrets/{secret}"
        assert parse_duration(m["stop_grace_period"]) > MonitorSection().grace_period
    for name, secret in data["secrets"].items():
        assert secret["file"] == f"./secrets/{name}"
    # no URL and no password in the file itself
    assert not [v for v in values(data) if "postgresql://" in v or "PASSWORD=" in v]


def test_the_instances_take_the_database_url_from_the_secret_over_the_images_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql://monitor:s3cret@postgres:5432/monitor?sslmode=disable"
    secret = tmp_path / "monitor_database_url"
    secret.write_text(url + "\n", encoding="utf-8")
    instance = compose("docker-compose.ha.yml")["services"]["monitor-a"]
    for name in [k for k in os.environ if k.startswith("MONITOR_")]:
        monkeypatch.delenv(name)
    # what the image sets (Dockerfile), then what the service adds, its file put here
    monkeypatch.setenv("MONITOR_MONITOR__DATABASE", "sqlite:////var/lib/ticker-monitor/state.db")
    for name, value in instance["environment"].items():
        monkeypatch.setenv(name, str(value))
    assert os.environ["MONITOR_MONITOR__DATABASE_FILE"] == "/run/secrets/monitor_database_url"
    monkeypatch.setenv("MONITOR_MONITOR__DATABASE_FILE", str(secret))
    monkeypatch.chdir(tmp_path)  # no .env here
    settings = load_settings(ROOT / "config" / "monitor.toml", env={"MONITOR_SECRETS_DIR": "-"})
    assert settings.monitor.database.get_secret_value() == url
