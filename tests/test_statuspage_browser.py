"""The status page in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by Selenium): the daemon watches the fixture page, the ticker changes, and the page shows
the new quotes, the alert and its delivery, on a desktop and on a phone.

Screenshots are kept in ``test-artifacts/`` (git-ignored): ``status-desktop.png`` and
``status-phone.png``; ``docs/`` holds copies for the README.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import (
    ROOT,
    DaemonProcess,
    alerts,
    free_port,
    page,
    wait_for,
    write_config,
)
from tests.servers import ThreadedPageServer
from tests.test_endpoint import get

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = ROOT / "test-artifacts"
#: this machine's network is closed: a browser left to itself tries to reach Google
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)

if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "needs Debian's chromium and chromium-driver (.ci/run installs them: "
        "apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402 -- only when a browser is there to drive
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium sends no usage statistics
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def emulate(driver: webdriver.Chrome, width: int, height: int, *, phone: bool) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 2 if phone else 1, "mobile": phone},
    )


def screenshot(driver: webdriver.Chrome, name: str, width: int, *, phone: bool) -> Path:
    """The whole page, however long, at ``width`` CSS pixels."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    emulate(driver, width, height, phone=phone)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path))
    return path


def quotes_on_page(driver: webdriver.Chrome) -> dict[str, tuple[str, str]]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#target-timesca table.pairs tbody tr")
    out = {}
    for row in rows:
        pair = row.find_element(By.CSS_SELECTOR, "td.pair").text
        rate = row.find_element(By.CSS_SELECTOR, "td.rate").text
        change = row.find_element(By.CSS_SELECTOR, "td.change").text
        out[pair] = (rate, change)
    return out


def test_status_page_shows_the_quotes_after_a_change(
    tmp_path: Path, browser: webdriver.Chrome
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    with ThreadedPageServer(page()) as server:
        config = write_config(tmp_path, server.url, interval="1s", listen=f"127.0.0.1:{port}")
        with DaemonProcess(config) as daemon:
            assert wait_for(lambda: get(f"{base}readyz")[0] == 200, timeout=20), daemon.logs()
            server.set_page(page({"TMT/USD": ("0.28600", "-0.05"), "KGS/USD": ("0.01150", "0.52")}))
            assert wait_for(lambda: len(alerts(tmp_path / "audit2.jsonl")) >= 4, timeout=15)

            emulate(browser, 1280, 900, phone=False)
            browser.get(base)
            assert browser.title == "ticker-monitor · ready"
            assert quotes_on_page(browser) == {
                "KGS/USD": ("0.01150", "0.52%"),
                "KZT/USD": ("0.00196", "-0%"),
                "TJS/USD": ("0.09650", "0%"),
                "UZS/USD": ("0.00008", "0%"),
                "TMT/USD": ("0.28600", "-0.05%"),
            }
            assert len(browser.find_elements(By.CSS_SELECTOR, "#target-timesca svg.spark")) == 5
            badge = browser.find_element(By.CSS_SELECTOR, "#target-timesca .badge")
            assert badge.text == "ok"
            alert_items = browser.find_elements(By.CSS_SELECTOR, "#alerts li")
            assert any(
                "TMT/USD" in li.text and "0.28575 → 0.28600" in li.text for li in alert_items
            )
            assert all("audit sent" in li.text and "audit2 sent" in li.text for li in alert_items)
            # nothing but the page itself: no script, no font, no stylesheet from anywhere
            assert browser.execute_script("return document.scripts.length") == 0
            resources = browser.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name)"
            )
            assert resources == []
            desktop = screenshot(browser, "status-desktop.png", 1280, phone=False)

            emulate(browser, 390, 844, phone=True)
            browser.get(base)
            assert quotes_on_page(browser)["TMT/USD"] == ("0.28600", "-0.05%")
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, "the page scrolls sideways on a phone"
            phone = screenshot(browser, "status-phone.png", 390, phone=True)
            assert daemon.terminate() == 0
    for shot in (desktop, phone):
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
