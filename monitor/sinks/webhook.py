"""Generic JSON webhook sink (``type = "webhook"``).

One ``POST`` per message to the configured URL. A message holds whole checks (``digest``: all
deliveries of one check together), and one send carries everything due (``bulk``): several
checks' events share a message while they stay within :data:`EVENTS_PER_POST`; a check with more
is a message of its own. If a later message of a send fails, the retry posts only the messages
not yet accepted (their deliveries carry a memo of the keys posted).

Request
-------

Headers:

* ``Content-Type: application/json``
* ``X-Ticker-Monitor-Delivery: <id>`` — the batch's id: the event's full dedup key for one event,
  ``digest-<hash of every dedup key>`` for several. A receiver can drop a redelivered batch by it
  (the delivery promise is at-least-once); a batch that grew on a retry gets a new id.
* ``X-Signature-256: sha256=<hex>`` — only with ``secret``: the HMAC-SHA256 of the exact body
  bytes keyed with the secret, as GitHub's ``X-Hub-Signature-256``. Verify it over the raw body
  before parsing, with a constant-time comparison.
* every ``headers`` entry of the sink's configuration (for example ``Authorization``); they cannot
  replace the three above.

Body (UTF-8 JSON), schema version 1::

    {
      "version": 1,
      "title": "timesca: TMT/USD ▼, KZT/USD ▲", # the rendered title (title_template applies)
      "text": "timesca TMT/USD ▼ 0.28575 → ...", # one line per pair per check (body_template)
      "events": [
        {
          "event_id": "9f2c…",                  # deterministic: the same facts, the same id
          "kind": "change_pct_changed",         # rate_changed | change_pct_changed | threshold |
                                                # threshold_cleared | pair_added | pair_removed |
                                                # source_down | source_recovered | parse_failed |
                                                # parse_recovered
          "target": "timesca",
          "pair": "TMT/USD",                    # null for target-level events
          "old": {"rate": "0.28575", "change_pct": "0"},      # exact decimal strings, or null
          "new": {"rate": "0.28575", "change_pct": "-0.14"},
          "observed_at": "2025-05-16T09:30:00+00:00",
          "page_date": "2025-05-16",            # or null
          "source_url": "https://timesca.com/",
          "rule": null,                         # the rule's name for threshold events, reminders
          "detail": "",
          "since": null,                        # when the condition began, or null
          "duration_seconds": null,             # observed_at - since, whole seconds, or null
          "failed_checks": null,                # an outage's failed checks, or null
          "reminder": 0,                        # N for the N-th reminder of a condition
          "test": false,                        # true for test-sink's sample
          "dedup_id": "1a2b3c4d",               # the short id shown in human messages
          "dedup_key": "1a2b3c4d…"              # unique per (event, sink): use it to deduplicate
        }
      ]
    }

Consumers must ignore unknown keys; a change that breaks this shape increments ``version``.

Classification: any 2xx is sent; 408, 425, 429 (``Retry-After`` honoured) and 5xx retry;
other 4xx and 3xx (redirects are not followed) are permanent; connection failures and timeouts
retry. The URL, the secret and the header values are never logged nor put in an error.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from typing import Any, Literal

import httpx
import structlog
from pydantic import Field, SecretStr, field_validator, model_validator

from monitor import render
from monitor.config_types import Duration, read_secret_files
from monitor.errors import SinkError
from monitor.models import Delivery, batch_key, by_check
from monitor.redact import LoggerGuard
from monitor.sinks import Accepted, Sink, SinkDeps, SinkSettings, SinkType
from monitor.sinks._http import already_posted, classify, pack, post, post_all, snippet


class WebhookConfig(SinkSettings):
    """Sends one signed JSON `POST` per message to your own receiver."""

    type: Literal["webhook"]
    url: SecretStr
    """`http://` or `https://`"""
    secret: SecretStr | None = None
    """HMAC key for the `X-Signature-256: sha256=<hex>` header"""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """extra request headers, e.g. `Authorization`. There is no `headers_file` form: use the
    environment (`MONITOR_SINKS__HOOK__HEADERS__AUTHORIZATION="Bearer ..."`)"""
    min_interval: Duration = 0.0
    """at least this long between two posts"""

    @model_validator(mode="before")
    @classmethod
    def _files(cls, data: Any) -> Any:
        return read_secret_files(data, ("url", "secret"))

    @field_validator("url")
    @classmethod
    def _http(cls, value: SecretStr) -> SecretStr:
        if not re.match(r"^https?://", value.get_secret_value()):
            raise ValueError("expected an http:// or https:// URL (value not shown)")
        return value


log = structlog.get_logger("monitor.sinks.webhook")

SCHEMA_VERSION = 1
#: a message carries the events of whole checks up to this many (one check's may be more)
EVENTS_PER_POST = 100
SIGNATURE_HEADER = "X-Signature-256"
DELIVERY_HEADER = "X-Ticker-Monitor-Delivery"


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Signature-256`` value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookSink:
    """Posts batches of events as signed JSON to one URL."""

    digest = True
    #: a send carries everything due, many checks' events packed into few messages
    bulk = True

    def __init__(
        self, name: str, config: WebhookConfig, *, http: httpx.AsyncClient | None = None
    ) -> None:
        self.name = name
        self.min_interval = float(config.min_interval)
        self._config = config
        self._url = config.url.get_secret_value()
        self._secret = config.secret.get_secret_value().encode() if config.secret else None
        self._extra = {key: value.get_secret_value() for key, value in config.headers.items()}
        self._own_http = http is None
        self._http = http if http is not None else httpx.AsyncClient()
        secrets = [self._url, *self._extra.values()]
        if config.secret:
            secrets.append(config.secret.get_secret_value())
        self._guard = LoggerGuard(secrets, ["httpx"])
        self._label = f"webhook {name!r}"

    def __repr__(self) -> str:
        signed = "signed" if self._secret else "unsigned"
        return f"WebhookSink(name={self.name!r}, {signed}, min_interval={self.min_interval:g})"

    def payload(self, batch: Sequence[Delivery]) -> dict[str, Any]:
        """The JSON document for ``batch`` (schema in the module docstring)."""
        events = []
        for delivery in batch:
            item = delivery.event.to_json()
            item["dedup_id"] = delivery.short_id
            item["dedup_key"] = delivery.dedup_key
            events.append(item)
        groups = render.lines(batch)
        return {
            "version": SCHEMA_VERSION,
            "title": render.digest_title(groups, self._config.title_template),
            "text": "\n".join(render.line(ln, self._config.body_template) for ln in groups),
            "events": events,
        }

    def request(self, batch: Sequence[Delivery]) -> tuple[bytes, dict[str, str]]:
        """The exact body bytes and the headers of the POST carrying ``batch``."""
        body = json.dumps(self.payload(batch), ensure_ascii=False, separators=(",", ":")).encode()
        headers = dict(self._extra)
        # ours win over configured headers of the same name (case-insensitively)
        for key in list(headers):
            if key.lower() in {"content-type", SIGNATURE_HEADER.lower(), DELIVERY_HEADER.lower()}:
                del headers[key]
        headers["Content-Type"] = "application/json"
        headers[DELIVERY_HEADER] = batch_key([d.dedup_key for d in batch])
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        return body, headers

    async def _post(self, batch: Sequence[Delivery]) -> None:
        body, headers = self.request(batch)
        try:
            answer = await post(
                self._http,
                self._url,
                content=body,
                headers=headers,
                deadline=self._config.timeout,
                label=self._label,
            )
        except SinkError as exc:
            log.warning("webhook_send_failed", sink=self.name, error=str(exc), retry=exc.retryable)
            raise
        error = classify(answer, label=self._label, redact=self._guard.redact)
        if error is None:
            return
        body_text = snippet(answer.body, self._guard.redact)
        if error.retryable:
            log.warning(
                "webhook_deferred",
                sink=self.name,
                status=answer.status,
                retry_after=answer.retry_after,
                body=body_text,
            )
        else:
            log.error("webhook_rejected", sink=self.name, status=answer.status, body=body_text)
        raise error

    def messages(self, batch: Sequence[Delivery]) -> list[list[Delivery]]:
        """The deliveries of each message carrying ``batch``: whole checks packed in order."""
        return pack(by_check(batch), EVENTS_PER_POST)

    async def send(self, batch: Sequence[Delivery], on_accepted: Accepted | None = None) -> None:
        """POST ``batch`` as one JSON document per message or raise ``SinkError``."""
        posted = already_posted(batch)
        remaining = [d for d in batch if d.dedup_key not in posted]
        parts = [(part, functools.partial(self._post, part)) for part in self.messages(remaining)]
        await post_all(parts, posted, on_accepted)

    async def aclose(self) -> None:
        self._guard.remove()
        if self._own_http:
            await self._http.aclose()


def _build(name: str, config: WebhookConfig, deps: SinkDeps) -> Sink:
    return WebhookSink(name, config, http=deps.http)


SINK_TYPE = SinkType("webhook", WebhookConfig, _build)
