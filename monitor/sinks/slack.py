"""Slack incoming-webhook sink (``type = "slack"``).

One POST per message, JSON with a top-level ``text`` (the notification fallback) and Block Kit
``blocks``: a ``header`` (the message's title: ``timesca: TMT/USD ▼ 0.28550 (-0.09%)``, or
``timesca: TMT/USD ▼, KZT/USD ▲ (+1 more)`` for a digest), then per line (one pair's events of
one check, or one outage event) a ``section`` (``▼ *TMT/USD* 0.28575 → 0.28550 (-0.09%), change
0% → -0.14%``, or the sink's ``body_template``) and a ``context`` (target, source URL, observed
time, page date and the line's short dedup ids).

Digest and bulk: all deliveries of one check go out together, and one send carries everything
due: whole checks share a post while their lines fit, so a burst of changes from many targets is
a few posts, each titled by its own lines. A message holds at most :data:`EVENTS_PER_MESSAGE`
lines (1 header + 2 blocks each stays within Slack's 50 blocks); one check with more lines is
split across posts of its own (``... (1/2)``), every line in exactly one. If a later
post fails, the retryable ``SinkError`` carries a memo listing the dedup keys already posted, and
the retry posts only the rest (no duplicates from a half-sent digest). Each accepted post is also
reported to the worker at once (``on_accepted``), which marks its deliveries sent, so a crash
re-sends at most the post in flight.

Text limits: the header is cut to 150 characters, every section and context text to 3,000, the
fallback ``text`` to 3,000. Every piece of scraped text has ``&``, ``<`` and ``>`` escaped, so a
page saying ``<!channel>`` cannot ping anyone.

Classification:

* 2xx with body ``ok`` (what Slack answers): sent.
* 2xx with any other body: **retryable** (``slack_unexpected_answer``). Slack itself never does
  this; a proxy or a captive portal that swallowed the post does, and the delivery promise is
  at-least-once. Point non-Slack receivers at the ``webhook`` sink, which accepts any 2xx.
* 429 (``Retry-After`` honoured), 408, 425 and 5xx: retryable (``slack_deferred``).
* Other 4xx (``invalid_payload``, ``no_service``, ``channel_not_found``, ``action_prohibited``
  ...) and 3xx: permanent, with Slack's answer in the message (``slack_rejected``).
* Connection failures and timeouts: retryable.

The webhook URL is the credential: it is never logged, never in an error, never in ``repr``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from typing import Any, Literal

import httpx
import structlog
from pydantic import SecretStr, field_validator, model_validator

from monitor import render
from monitor.config_types import Duration, read_secret_files
from monitor.errors import SinkError
from monitor.models import Delivery, by_check
from monitor.redact import LoggerGuard
from monitor.sinks import Accepted, Sink, SinkDeps, SinkSettings, SinkType
from monitor.sinks._http import Answer, already_posted, classify, pack, post, post_all, snippet


class SlackConfig(SinkSettings):
    """Posts to a Slack incoming webhook."""

    type: Literal["slack"]
    webhook_url: SecretStr
    """`https://hooks.slack.com/services/...`"""
    min_interval: Duration = 1.0
    """client-side rate limit: at least this long between two posts to the webhook"""

    @model_validator(mode="before")
    @classmethod
    def _files(cls, data: Any) -> Any:
        return read_secret_files(data, ("webhook_url",))

    @field_validator("webhook_url")
    @classmethod
    def _https(cls, value: SecretStr) -> SecretStr:
        if not re.match(r"^https?://", value.get_secret_value()):
            raise ValueError("expected an http(s):// webhook URL (value not shown)")
        return value


log = structlog.get_logger("monitor.sinks.slack")

MAX_BLOCKS = 50
HEADER_MAX = 150
TEXT_MAX = 3000
FALLBACK_MAX = 3000
RENDER_MAX = 4 * TEXT_MAX
#: one header plus a section and a context per line must fit in MAX_BLOCKS
EVENTS_PER_MESSAGE = (MAX_BLOCKS - 1) // 2

PAIR_SECTION = "$direction *$pair* $summary"
TARGET_SECTION = "*$target* $summary"
CONTEXT = "$target · $source_url · observed $observed_at · page date $page_date · id $ids"


def escape(text: str) -> str:
    """Slack's escaping of ``&``, ``<`` and ``>`` (the only characters it asks to escape)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cap(text: str, limit: int) -> str:
    """Cut escaped text to ``limit`` characters without splitting an ``&amp;``-style entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


class SlackSink:
    """Posts deliveries to one Slack incoming webhook."""

    digest = True
    #: a send carries everything due, many checks' lines packed into few posts
    bulk = True

    def __init__(
        self, name: str, config: SlackConfig, *, http: httpx.AsyncClient | None = None
    ) -> None:
        self.name = name
        self.min_interval = float(config.min_interval)
        self._config = config
        self._url = config.webhook_url.get_secret_value()
        self._own_http = http is None
        self._http = http if http is not None else httpx.AsyncClient()
        self._guard = LoggerGuard([self._url], ["httpx"])
        self._label = f"slack webhook {name!r}"

    def __repr__(self) -> str:
        return f"SlackSink(name={self.name!r}, min_interval={self.min_interval:g})"

    # --- rendering ---------------------------------------------------------------------------

    def _section(self, ln: render.Line) -> str:
        template = self._config.body_template
        if not template:
            template = PAIR_SECTION if ln.is_pair else TARGET_SECTION
        # render generously, then cut with cap(), which never splits an &amp; entity
        text = render.render(ln, template, escape=escape, limit=RENDER_MAX)
        if ln.test:
            text = render.TEST_MARK + text
        return cap(text, TEXT_MAX) or "-"  # Slack refuses an empty text

    @staticmethod
    def _context(ln: render.Line) -> str:
        ids = " ".join(f"`{short}`" for short in ln.short_ids)
        template = CONTEXT.replace("$ids", ids)  # the ids are hex digits: nothing to escape
        return cap(render.render(ln, template, escape=escape, limit=RENDER_MAX), TEXT_MAX)

    def _payload(self, chunk: Sequence[render.Line], header: str) -> dict[str, Any]:
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}}
        ]
        text_lines = [header]
        for ln in chunk:
            section = self._section(ln)
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": section}})
            blocks.append(
                {"type": "context", "elements": [{"type": "mrkdwn", "text": self._context(ln)}]}
            )
            text_lines.append(f"{section} (id {' '.join(ln.short_ids)})")
        return {"text": cap("\n".join(text_lines), FALLBACK_MAX), "blocks": blocks}

    def _title(self, groups: Sequence[render.Line]) -> str:
        return render.digest_title(groups, self._config.title_template, escape=escape) or "-"

    def payloads(self, batch: Sequence[Delivery]) -> list[tuple[list[Delivery], dict[str, Any]]]:
        """The posts that carry ``batch``: each with its deliveries and its JSON payload.

        Whole checks share a post while their lines fit (a burst of many checks is a few posts,
        each titled by its own lines); a check of more lines than a post holds is split over
        posts of its own, numbered ``(1/2)``.
        """
        checks = [render.lines(run) for run in by_check(batch)]
        out = []
        for part in pack(checks, EVENTS_PER_MESSAGE):
            chunks = [
                part[i : i + EVENTS_PER_MESSAGE] for i in range(0, len(part), EVENTS_PER_MESSAGE)
            ]
            title = self._title(part)
            for number, chunk in enumerate(chunks, start=1):
                suffix = "" if len(chunks) == 1 else f" ({number}/{len(chunks)})"
                header = cap(title, HEADER_MAX - len(suffix)) + suffix
                deliveries = [d for ln in chunk for d in ln.deliveries]
                out.append((deliveries, self._payload(chunk, header)))
        return out

    # --- sending -----------------------------------------------------------------------------

    def _judge(self, answer: Answer) -> SinkError | None:
        body = snippet(answer.body, self._guard.redact)
        error = classify(answer, label=self._label, redact=self._guard.redact)
        if error is None:  # 2xx: Slack's own answer is the word "ok"
            if answer.body.strip() == "ok":
                return None
            log.warning("slack_unexpected_answer", sink=self.name, status=answer.status, body=body)
            return SinkError(
                f"{self._label}: HTTP {answer.status} without Slack's 'ok' answer: {body}",
                retryable=True,
            )
        if error.retryable:
            log.warning(
                "slack_deferred",
                sink=self.name,
                status=answer.status,
                retry_after=answer.retry_after,
                body=body,
            )
        else:
            log.error("slack_rejected", sink=self.name, status=answer.status, body=body)
        return error

    async def _post(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            answer = await post(
                self._http,
                self._url,
                content=body,
                headers={"Content-Type": "application/json; charset=utf-8"},
                deadline=self._config.timeout,
                label=self._label,
            )
        except SinkError as exc:
            log.warning("slack_send_failed", sink=self.name, error=str(exc), retry=exc.retryable)
            raise
        judged = self._judge(answer)
        if judged is not None:
            raise judged

    async def send(self, batch: Sequence[Delivery], on_accepted: Accepted | None = None) -> None:
        """Post ``batch`` (in several messages if needed) or raise ``SinkError``.

        ``on_accepted(part)`` is awaited after each post Slack took, so the worker marks it sent at
        once and a crash before the last post re-sends none of the earlier ones.
        """
        posted = already_posted(batch)
        remaining = [d for d in batch if d.dedup_key not in posted]
        parts = [
            (chunk, functools.partial(self._post, payload))
            for chunk, payload in self.payloads(remaining)
        ]
        await post_all(parts, posted, on_accepted)

    async def aclose(self) -> None:
        self._guard.remove()
        if self._own_http:
            await self._http.aclose()


def _build(name: str, config: SlackConfig, deps: SinkDeps) -> Sink:
    return SlackSink(name, config, http=deps.http)


SINK_TYPE = SinkType("slack", SlackConfig, _build)
