"""The operator endpoint of the real daemon process: /readyz following the source, the ticker as
Prometheus gauges, `status` asking the daemon, and no secret in anything served or printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_harness import ROOT, DaemonProcess, free_port, page, wait_for, write_config
from tests.pages import SEED_QUOTES
from tests.servers import Reply, ThreadedPageServer

pytestmark = pytest.mark.slow

TOKEN = "tok-9f8e7d6c5b4a"
USERINFO = "scraper:pw-1a2b3c4d"
HOOK = "/services/T0SECRET/B0SECRET/hook-5e6f7a8b9c"
SECRETS = (TOKEN, "pw-1a2b3c4d", "hook-5e6f7a8b9c", "T0SECRET")


#: straight to loopback, whatever proxy the environment names
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> tuple[int, str]:
    """(status, body); (0, "") while nothing listens yet."""
    try:
        with OPENER.open(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except urllib.error.URLError:
        return 0, ""


def gauges(text: str) -> dict[tuple[str, str, str], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("ticker_rate", "ticker_change_pct"):
            for s in family.samples:
                out[(family.name, s.labels["target"], s.labels["pair"])] = s.value
    return out


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env=env,
    )


def test_readyz_follows_the_source_and_metrics_carry_the_ticker(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with ThreadedPageServer(page()) as server:
        server.route(HOOK, Reply(200, body=b"ok"))
        scheme, rest = server.url.split("://")
        url = f"{scheme}://{USERINFO}@{rest}?token={TOKEN}"
        config = write_config(
            tmp_path,
            url,
            interval="1s",
            listen=f"127.0.0.1:{port}",
            sinks=("audit", "team"),
            target_extra="down_after = 2",
            extra=f'[sinks.team]\ntype = "slack"\nwebhook_url = "{server.url_for(HOOK)}"\n',
        )
        with DaemonProcess(config) as daemon:
            assert wait_for(lambda: get(f"{base}/readyz")[0] == 200, timeout=30), daemon.logs()
            status, metrics = get(f"{base}/metrics")
            assert status == 200
            values = gauges(metrics)
            for pair, rate, change in SEED_QUOTES:
                assert values[("ticker_rate", "timesca", pair)] == float(Decimal(rate))
                assert values[("ticker_change_pct", "timesca", pair)] == float(Decimal(change))
            names = {f.name for f in text_string_to_metric_families(metrics)}
            assert {
                "ticker_monitor_scheduler_lateness_seconds",
                "ticker_monitor_check_duration_seconds",
                "ticker_monitor_last_success_timestamp_seconds",
            } <= names

            # a change: the gauges follow, and the alert's delivery is timed
            server.set_page(page({"TMT/USD": ("0.28600", "-0.05")}))
            assert wait_for(
                lambda: (
                    gauges(get(f"{base}/metrics")[1]).get(("ticker_rate", "timesca", "TMT/USD"))
                    == float(Decimal("0.28600"))
                ),
                timeout=30,
            )
            assert wait_for(
                lambda: (
                    'ticker_monitor_delivery_latency_seconds_count{sink="team"}'
                    in get(f"{base}/metrics")[1]
                ),
                timeout=30,
            )

            # the source goes down: /readyz names it, /healthz stays up
            server.default = Reply(500, body=b"upstream broke")

            # (it may first fail for a success older than two intervals, then for being down)
            def failing() -> dict[str, str]:
                status, body = get(f"{base}/readyz")
                return json.loads(body)["failing"] if status == 503 else {}

            assert wait_for(
                lambda: failing().get("timesca", "").startswith("source down"), timeout=30
            )
            assert list(failing()) == ["timesca"]
            assert get(f"{base}/healthz")[0] == 200
            # the log says when the next check is and how far it is from source_down
            first = daemon.events_named("fetch_failed")[0]
            assert first["failures"] == 1
            assert first["failures_until_down"] == 1
            assert "T" in first["next_check"]  # ISO 8601

            # while it is down, `status` asks the daemon and prints the same picture
            live = cli("status", "--json", "--config", str(config), cwd=tmp_path)
            assert live.returncode == 0, live.stderr
            picture = json.loads(live.stdout)
            assert picture["live"] is True
            assert picture["targets"][0]["health"] == "down"
            assert picture["targets"][0]["next_run"] is not None
            served = [live.stdout, cli("status", "--config", str(config), cwd=tmp_path).stdout]
            served += [get(f"{base}{path}")[1] for path in ("/", "/api/status", "/metrics")]

            server.default = None
            assert wait_for(lambda: get(f"{base}/readyz")[0] == 200, timeout=30)
            assert daemon.terminate() == 0
    for text in served:
        for secret in SECRETS:
            assert secret not in text
    assert "timesca" in served[2]  # the page itself
