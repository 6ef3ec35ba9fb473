"""Email sink over SMTP (``type = "email"``, aiosmtplib).

Transport security is explicit, never opportunistic:

* ``tls = "implicit"``: TLS from the first byte (port 465 by default).
* ``tls = "starttls"``: connect in clear, ``EHLO``, then STARTTLS is **required**: a server that
  does not offer it gets no ``AUTH``, no ``MAIL`` and no ``DATA``. This fails as *retryable*
  (``email_starttls_unavailable``, logged as an error): a missing STARTTLS is what an active
  attacker stripping it looks like, and dead-lettering on it would let one stripped connection
  silence an alert for good; retrying keeps the alert until the server (or the config) is fixed or
  ``delivery.max_age`` passes, and the error line tells the operator what to change.
* ``tls = "none"``: clear text (the configuration allows it only to a loopback host or with
  ``allow_insecure``).

Certificates are always verified (``validate_certs=True``); tests inject a ``tls_context`` trusting
their own CA. ``username``/``password`` log in after TLS is up. One connection per send, the whole
send (connect, TLS, login, transaction) under ``asyncio.timeout(timeout)``.

Message: ``From``/``To``/``Cc`` from the configuration; ``Subject: [ticker-monitor] <title>``
(sanitized: no CR/LF can reach a header); ``Message-ID`` derived from the batch's dedup keys
(``<{dedup_key}@ticker-monitor>`` for one delivery, ``<digest-{hash of the keys}@ticker-monitor>``
for several), so a retried message carries the same id and a mail client can fold a duplicate,
while two different batches never share one; ``Auto-Submitted: auto-generated``;
``multipart/alternative`` with a text part (one line per pair per check, one per outage event)
and an HTML part (a small table with a row per line, every value HTML-escaped).

Classification:

* connection failures, timeouts, TLS failures, a missing STARTTLS, and 4xx replies: retryable;
* 5xx replies (bad credentials ``535``, sender refused, message refused ...): permanent;
* recipients: each refused with 5xx is logged (``email_recipient_refused``) and not retried; if some
  were refused with 4xx, the error is retryable and its ``memo`` records who is done
  (``{"accepted": [...], "refused": [...]}``), so the next attempt goes only to the others. A retry
  skips a recipient only if every delivery of the batch lists them as done. If every recipient
  refused with 5xx and none ever accepted, the error is permanent.

The password is never logged nor put in an error message.
"""

from __future__ import annotations

import asyncio
import html
import json
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime
from typing import Annotated, Any, Literal

import aiosmtplib
import structlog
from pydantic import ConfigDict, Field, SecretStr, model_validator

from monitor import render
from monitor.config_types import DocDefault, read_secret_files
from monitor.errors import SinkError
from monitor.models import Delivery, batch_key
from monitor.sinks import Accepted, Sink, SinkDeps, SinkSettings, SinkType
from monitor.sinks._http import failure_reason


class EmailConfig(SinkSettings):
    """Sends mail over SMTP: one mail per message, one connection per send."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    type: Literal["email"]
    host: str
    """the SMTP server"""
    port: Annotated[
        Annotated[int, Field(ge=1, le=65535)] | None,
        DocDefault("`465` for `implicit`, `587` for `starttls`, `25` for `none`"),
    ] = None
    """the SMTP port"""
    tls: Literal["starttls", "implicit", "none"]
    """`starttls`, `implicit` or `none` (clear text: only to `localhost`, `127.*` or `::1`, or with
    `allow_insecure`)"""
    allow_insecure: bool = False
    """allow `tls = "none"` to a host that is not loopback"""
    username: str | None = None
    """log in with this user after TLS is up"""
    password: SecretStr | None = None
    """needs `username`"""
    sender: str = Field(alias="from")
    """`From` and envelope sender, e.g. `"ticker-monitor <alerts@example.org>"`"""
    to: list[str]
    """at least one recipient"""
    cc: list[str] = Field(default_factory=list)
    """more recipients, in the `Cc` header"""

    @model_validator(mode="before")
    @classmethod
    def _files(cls, data: Any) -> Any:
        return read_secret_files(data, ("password",))

    @model_validator(mode="after")
    def _tls_policy(self) -> EmailConfig:
        loopback = self.host in ("localhost", "::1") or self.host.startswith("127.")
        if self.tls == "none" and not (loopback or self.allow_insecure):
            raise ValueError(
                "tls = 'none' sends mail in clear text; allowed only to a loopback host "
                "or with allow_insecure = true"
            )
        if self.password is not None and self.username is None:
            raise ValueError("password is set but username is not")
        if not self.to:
            raise ValueError("to: name at least one recipient")
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return {"implicit": 465, "starttls": 587, "none": 25}[self.tls]


log = structlog.get_logger("monitor.sinks.email")

SUBJECT_PREFIX = "[ticker-monitor] "
MESSAGE_ID_DOMAIN = "ticker-monitor"


def message_id(batch: Sequence[Delivery]) -> str:
    """A stable ``Message-ID`` for the mail carrying ``batch``."""
    return f"<{batch_key([d.dedup_key for d in batch])}@{MESSAGE_ID_DOMAIN}>"


def _is_permanent(code: int) -> bool:
    return 500 <= code < 600


class _Progress:
    """Which recipients are done (accepted, or refused for good) for every delivery of a batch."""

    def __init__(self, batch: Sequence[Delivery]) -> None:
        accepted: set[str] | None = None
        refused: set[str] | None = None
        for delivery in batch:
            got, bad = self._parse(delivery.memo)
            accepted = got if accepted is None else accepted & got
            refused = bad if refused is None else refused & bad
        self.accepted = accepted or set()
        self.refused = refused or set()

    @staticmethod
    def _parse(memo: str | None) -> tuple[set[str], set[str]]:
        if not memo:
            return set(), set()
        try:
            data = json.loads(memo)
        except ValueError:
            return set(), set()
        if isinstance(data, list):  # a bare list: recipients that accepted
            return {str(x) for x in data}, set()
        if not isinstance(data, dict):
            return set(), set()
        return (
            {str(x) for x in data.get("accepted", ()) if isinstance(x, str)},
            {str(x) for x in data.get("refused", ()) if isinstance(x, str)},
        )

    @property
    def done(self) -> set[str]:
        return self.accepted | self.refused

    def memo(self) -> str | None:
        if not self.done:
            return None
        return json.dumps({"accepted": sorted(self.accepted), "refused": sorted(self.refused)})


class EmailSink:
    """Sends one mail per batch over SMTP, with explicit TLS."""

    digest = True
    bulk = False
    min_interval = 0.0

    def __init__(
        self,
        name: str,
        config: EmailConfig,
        *,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self.name = name
        self._config = config
        self._tls_context = tls_context
        self._local_hostname = local_hostname
        self._label = f"email {name!r}"

    def __repr__(self) -> str:
        c = self._config
        return (
            f"EmailSink(name={self.name!r}, host={c.host!r}, port={c.effective_port}, "
            f"tls={c.tls!r}, recipients={len(self.recipients)})"
        )

    @property
    def recipients(self) -> list[str]:
        """Every envelope recipient, To then Cc, without duplicates."""
        return list(dict.fromkeys([*self._config.to, *self._config.cc]))

    # --- the message -------------------------------------------------------------------------

    def message(self, batch: Sequence[Delivery], now: datetime | None = None) -> EmailMessage:
        """The mail carrying ``batch``."""
        c = self._config
        title = render.digest_title(batch, c.title_template)
        msg = EmailMessage(policy=default_policy)
        msg["From"] = c.sender
        msg["To"] = ", ".join(c.to)
        if c.cc:
            msg["Cc"] = ", ".join(c.cc)
        msg["Subject"] = render.sanitize(SUBJECT_PREFIX + title, 250)
        msg["Message-ID"] = message_id(batch)
        msg["Date"] = format_datetime(now or datetime.now(UTC))
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Ticker-Monitor-Delivery"] = batch_key([d.dedup_key for d in batch])
        msg.set_content(self._text(batch, title))
        msg.add_alternative(self._html(batch, title), subtype="html")
        return msg

    def _text(self, batch: Sequence[Delivery], title: str) -> str:
        lines = [title, ""]
        lines += [render.line(ln, self._config.body_template) for ln in render.lines(batch)]
        first = batch[0].event
        lines += ["", f"source: {render.sanitize(first.source_url, render.URL_LIMIT) or 'n/a'}"]
        lines += ["-- ", "ticker-monitor (ids: " + " ".join(d.short_id for d in batch) + ")"]
        return "\n".join(lines) + "\n"

    def _html(self, batch: Sequence[Delivery], title: str) -> str:
        esc = html.escape
        head = ("Pair", "Change", "Rate", "Change %", "Page date", "Observed (UTC)", "ID")
        rows = ["<tr>" + "".join(f'<th align="left">{esc(h)}</th>' for h in head) + "</tr>"]
        for ln in render.lines(batch):
            f = render.fields(ln, escape=esc)
            if self._config.body_template:
                what = render.line(ln, self._config.body_template, escape=esc)
            else:
                what = f"{f['direction']} {f['summary']}"
                what = render.TEST_MARK + what if ln.test else what
            values = (
                f["pair"] if f["pair"] != "n/a" else f["target"],
                what,
                f["new_rate"],
                f["new_change_pct"],
                f["page_date"],
                f["observed_at"],
                " ".join(f"<code>{short}</code>" for short in ln.short_ids),
            )
            rows.append("<tr>" + "".join(f"<td>{v}</td>" for v in values) + "</tr>")
        source = esc(render.sanitize(batch[0].event.source_url, render.URL_LIMIT))
        table = "\n".join(rows)
        return (
            "<!DOCTYPE html>\n<html><body>\n"
            f"<h3>{esc(title)}</h3>\n"
            '<table border="1" cellpadding="4" style="border-collapse:collapse">\n'
            f"{table}\n</table>\n"
            f"<p>source: {source or 'n/a'}</p>\n"
            "</body></html>\n"
        )

    # --- the transaction ---------------------------------------------------------------------

    def _client(self) -> aiosmtplib.SMTP:
        c = self._config
        return aiosmtplib.SMTP(
            hostname=c.host,
            port=c.effective_port,
            use_tls=c.tls == "implicit",
            start_tls=False,  # STARTTLS is done (and required) explicitly in _open
            validate_certs=True,
            tls_context=self._tls_context,
            timeout=c.timeout,
            local_hostname=self._local_hostname,
        )

    async def _open(self, smtp: aiosmtplib.SMTP) -> None:
        c = self._config
        await smtp.connect()
        if c.tls == "starttls":
            await smtp.ehlo()
            if not smtp.supports_extension("starttls"):
                log.error(
                    "email_starttls_unavailable", sink=self.name, host=c.host, port=c.effective_port
                )
                raise SinkError(
                    f"{self._label}: {c.host}:{c.effective_port} does not offer STARTTLS "
                    "(tls = 'starttls' requires it; nothing was sent)",
                    retryable=True,
                )
            await smtp.starttls()
        if c.username is not None:
            password = c.password.get_secret_value() if c.password else ""
            await smtp.login(c.username, password)

    async def _transact(
        self, smtp: aiosmtplib.SMTP, msg: EmailMessage, recipients: list[str]
    ) -> tuple[set[str], dict[str, tuple[int, str]]]:
        """Send ``msg`` to ``recipients``: (those who accepted, those refused with their reply)."""
        refused: dict[str, tuple[int, str]] = {}
        try:
            errors, _ = await smtp.send_message(
                msg, sender=self._config.sender, recipients=recipients
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            for item in exc.recipients:
                refused[item.recipient] = (item.code, item.message)
            return set(), refused
        for address, response in errors.items():
            refused[address] = (response.code, response.message)
        return {r for r in recipients if r not in refused}, refused

    async def send(self, batch: Sequence[Delivery], on_accepted: Accepted | None = None) -> None:
        """Mail ``batch`` as one message, or raise ``SinkError``."""
        if not batch:
            return
        progress = _Progress(batch)
        recipients = [r for r in self.recipients if r not in progress.done]
        if not recipients:
            return
        try:
            msg = self.message(batch)
        except (ValueError, TypeError) as exc:  # an address or header the email package refuses
            raise SinkError(
                f"{self._label}: cannot build the message ({type(exc).__name__}); check from/to/cc",
                retryable=False,
            ) from None
        smtp = self._client()
        try:
            async with asyncio.timeout(self._config.timeout):
                await self._open(smtp)
                accepted, refused = await self._transact(smtp, msg, recipients)
            await self._quit(smtp)
        except SinkError as exc:
            if exc.retryable:
                exc.memo = progress.memo()
            raise
        except Exception as exc:  # noqa: BLE001 -- every library failure becomes a SinkError
            raise self._translate(exc, progress) from None
        finally:
            smtp.close()
        self._settle(accepted, refused, progress)

    def _settle(
        self, accepted: set[str], refused: dict[str, tuple[int, str]], progress: _Progress
    ) -> None:
        """Record the recipients' answers; raise if someone must be retried or nobody got it."""
        progress.accepted |= accepted
        temporary = []
        for address, (code, text) in refused.items():
            reply = render.sanitize(text, 200)
            log.warning(
                "email_recipient_refused",
                sink=self.name,
                recipient=address,
                code=code,
                reply=reply,
                retry=not _is_permanent(code),
            )
            if _is_permanent(code):
                progress.refused.add(address)
            else:
                temporary.append(address)
        if temporary:
            raise SinkError(
                f"{self._label}: recipient(s) deferred, will retry: {', '.join(sorted(temporary))}",
                retryable=True,
                memo=progress.memo(),
            )
        if not progress.accepted:
            raise SinkError(
                f"{self._label}: every recipient was refused permanently: "
                + ", ".join(f"{a} ({refused[a][0]})" for a in sorted(refused)),
                retryable=False,
            )

    def _translate(self, exc: Exception, progress: _Progress) -> SinkError:
        c = self._config
        where = f"{c.host}:{c.effective_port}"
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            reply = render.sanitize(exc.message, 200)
            permanent = _is_permanent(exc.code)
            step = _STEPS.get(type(exc), "the server")
            event = "email_rejected" if permanent else "email_deferred"
            log.warning(event, sink=self.name, host=where, step=step, code=exc.code, reply=reply)
            return SinkError(
                f"{self._label}: {step} answered {exc.code} {reply}",
                retryable=not permanent,
                memo=None if permanent else progress.memo(),
            )
        if isinstance(exc, TimeoutError):
            text = f"timed out after {c.timeout:g}s"
            retryable = True
        elif isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected):
            what = "connection failed" if isinstance(exc, aiosmtplib.SMTPConnectError) else "lost"
            reason = failure_reason(exc)
            text = f"{what} ({reason})" if reason else what
            retryable = True
        elif isinstance(exc, ssl.SSLError | OSError):
            text = failure_reason(exc) or type(exc).__name__
            retryable = True
        elif isinstance(exc, aiosmtplib.SMTPException):
            # the server lacks something the configuration needs (an AUTH mechanism, SMTPUTF8)
            text = render.sanitize(str(exc), 200)
            retryable = False
        elif isinstance(exc, ValueError):
            text = f"invalid message or address ({render.sanitize(str(exc), 200)})"
            retryable = False
        else:
            text = f"unexpected {type(exc).__name__}"
            retryable = True
        log.warning("email_failed", sink=self.name, host=where, error=text, retry=retryable)
        return SinkError(
            f"{self._label}: {where}: {text}",
            retryable=retryable,
            memo=progress.memo() if retryable else None,
        )

    @staticmethod
    async def _quit(smtp: aiosmtplib.SMTP) -> None:
        """Say QUIT politely; the mail is settled already, so a failure here changes nothing."""
        if not smtp.is_connected:
            return
        try:
            await asyncio.wait_for(smtp.quit(), timeout=5)
        except Exception:  # noqa: BLE001 -- see the docstring
            smtp.close()

    async def aclose(self) -> None:
        return None


_STEPS: dict[type[Exception], str] = {
    aiosmtplib.SMTPAuthenticationError: "AUTH",
    aiosmtplib.SMTPSenderRefused: "MAIL FROM",
    aiosmtplib.SMTPDataError: "DATA",
    aiosmtplib.SMTPHeloError: "EHLO",
    aiosmtplib.SMTPConnectResponseError: "the greeting",
}


def _build(name: str, config: EmailConfig, deps: SinkDeps) -> Sink:
    return EmailSink(name, config, tls_context=deps.smtp_tls_context)


SINK_TYPE = SinkType("email", EmailConfig, _build)
