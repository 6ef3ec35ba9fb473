"""Apprise sink (``type = "apprise"``): any of Apprise's ~100 services by URL.

Apprise is optional (``pip install 'ticker-monitor[apprise]'``) and imported only when such a sink
is built; without it, building the sink raises ``ConfigError`` saying how to install it.

Each configured URL is its own ``Apprise`` object and is notified in turn, with the batch's title
(``title_template``) and one line per pair per check (``body_template``) as plain text. Apprise is
synchronous (it uses ``requests``), so each ``notify`` runs in a worker thread
(``asyncio.to_thread``) and the whole send is bounded by ``asyncio.timeout(timeout)``. A timed-out
thread cannot be killed; it ends on the plugin's own socket timeouts, and its result is ignored.

``notify`` answering false (Apprise logs why) is a retryable ``SinkError``. With several URLs, the
error's ``memo`` lists which URLs (by a short hash, never the URL) already took the message, and the
retry notifies only the others.

The URLs carry tokens: they are never logged nor put in an error or ``repr``; Apprise's and
urllib3's own log records are filtered for them while the sink lives (see ``monitor.redact``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from typing import Any, Literal

import structlog
from pydantic import SecretStr, field_validator

from monitor import render
from monitor.errors import ConfigError, SinkError
from monitor.models import Delivery
from monitor.redact import LoggerGuard
from monitor.sinks import Accepted, Sink, SinkDeps, SinkSettings, SinkType


class AppriseConfig(SinkSettings):
    """Notifies any of Apprise's services (ntfy, Telegram, Discord, ...) by URL; needs
    `pip install 'ticker-monitor[apprise]'`."""

    type: Literal["apprise"]
    urls: list[SecretStr]
    """at least one [Apprise URL](https://github.com/caronc/apprise/wiki). There is no `urls_file`
    form: use `MONITOR_SINKS__PHONE__URLS='["ntfy://..."]'` to keep them out of the file"""

    @field_validator("urls")
    @classmethod
    def _some(cls, value: list[SecretStr]) -> list[SecretStr]:
        if not value:
            raise ValueError("name at least one Apprise URL")
        return value


log = structlog.get_logger("monitor.sinks.apprise")

INSTALL_HINT = "pip install 'ticker-monitor[apprise]'"
#: the third-party loggers that may print a notification URL
THIRD_PARTY_LOGGERS = ("apprise", "urllib3.connectionpool", "urllib3.connection")


def _url_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def _import_apprise(name: str) -> Any:
    try:
        import apprise  # noqa: PLC0415 -- optional dependency, imported only when configured
    except ImportError:
        raise ConfigError(
            [f"sinks.{name}: the apprise sink needs the apprise package: {INSTALL_HINT}"]
        ) from None
    return apprise


def _load(module: Any, name: str, urls: Sequence[str]) -> list[tuple[str, Any]]:
    """One ``Apprise`` object per URL, with the URL's short id; ``ConfigError`` for a bad URL."""
    targets: list[tuple[str, Any]] = []
    problems = []
    for index, url in enumerate(urls):
        target = module.Apprise()
        if not target.add(url):
            problems.append(
                f"sinks.{name}.urls[{index}]: Apprise does not understand this URL "
                "(value not shown)"
            )
        targets.append((_url_id(url), target))
    if problems:
        raise ConfigError(problems)
    return targets


class AppriseSink:
    """Notifies every configured Apprise URL."""

    digest = True
    bulk = False
    min_interval = 0.0

    def __init__(self, name: str, config: AppriseConfig) -> None:
        self.name = name
        self._config = config
        urls = [u.get_secret_value() for u in config.urls]
        self._guard = LoggerGuard(urls, THIRD_PARTY_LOGGERS)
        try:
            module = _import_apprise(name)
            self._targets = _load(module, name, urls)
            self._notify_type = module.NotifyType.INFO
            self._format = module.NotifyFormat.TEXT
        except BaseException:
            self._guard.remove()
            raise
        self._lock = asyncio.Lock()
        self._label = f"apprise {name!r}"

    def __repr__(self) -> str:
        return f"AppriseSink(name={self.name!r}, urls={len(self._targets)})"

    @staticmethod
    def _done(batch: Sequence[Delivery]) -> set[str]:
        done: set[str] | None = None
        for delivery in batch:
            ids: set[str] = set()
            if delivery.memo:
                try:
                    data = json.loads(delivery.memo)
                except ValueError:
                    data = None
                if isinstance(data, dict) and isinstance(data.get("notified"), list):
                    ids = {str(x) for x in data["notified"]}
            done = ids if done is None else done & ids
        return done or set()

    def _notify(self, target: Any, title: str, body: str) -> bool:
        result = target.notify(
            body=body, title=title, notify_type=self._notify_type, body_format=self._format
        )
        return bool(result)

    async def send(self, batch: Sequence[Delivery], on_accepted: Accepted | None = None) -> None:
        """Notify every URL not yet notified for ``batch``, or raise ``SinkError``."""
        if not batch:
            return
        title = render.digest_title(batch, self._config.title_template)
        template = self._config.body_template
        body = "\n".join(render.line(ln, template) for ln in render.lines(batch))
        done = self._done(batch)
        failed = 0
        async with self._lock:
            try:
                async with asyncio.timeout(self._config.timeout):
                    for url_id, target in self._targets:
                        if url_id in done:
                            continue
                        try:
                            ok = await asyncio.to_thread(self._notify, target, title, body)
                        except Exception as exc:  # noqa: BLE001 -- a plugin's bug is a failed notify
                            log.warning(
                                "apprise_plugin_error", sink=self.name, error=type(exc).__name__
                            )
                            ok = False
                        if ok:
                            done.add(url_id)
                        else:
                            failed += 1
            except TimeoutError:
                log.warning("apprise_timeout", sink=self.name, timeout=self._config.timeout)
                raise SinkError(
                    f"{self._label}: timed out after {self._config.timeout:g}s",
                    retryable=True,
                    memo=self._memo(done),
                ) from None
        if failed:
            log.warning("apprise_failed", sink=self.name, failed=failed, of=len(self._targets))
            raise SinkError(
                f"{self._label}: {failed} of {len(self._targets)} URL(s) did not take the "
                "notification (Apprise's log says why)",
                retryable=True,
                memo=self._memo(done),
            )

    @staticmethod
    def _memo(done: set[str]) -> str | None:
        return json.dumps({"notified": sorted(done)}) if done else None

    async def aclose(self) -> None:
        self._guard.remove()


def _build(name: str, config: AppriseConfig, deps: SinkDeps) -> Sink:
    return AppriseSink(name, config)


SINK_TYPE = SinkType("apprise", AppriseConfig, _build)
