"""Alert sinks: where outbox deliveries go.

A sink is anything that implements :class:`Sink`. The delivery worker (``monitor.outbox``) hands it a
batch of deliveries (several only when ``digest`` is true: what one check produced for this sink),
and the sink either returns (every delivery in the batch is accepted) or raises
:class:`monitor.errors.SinkError` saying whether the failure is ``retryable``. A sink that carries
one batch in several messages (Slack splits a large digest into posts) awaits
``on_accepted(part)`` after each message the receiver took: the worker marks those deliveries
sent at once, so a crash re-sends at most the message in flight, never the parts already posted.
A sink never raises any other exception type: it translates its library's errors at its own
boundary, and it never puts a secret (webhook URL, password, token) into an error message.

Each sink's module owns its ``[sinks.NAME]`` model (a :class:`SinkSettings`) and exports a
:class:`SinkType` that says how to build the sink from it; ``monitor.sinks.registry`` lists them.
Adding a sink is one new module and one line in the registry.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Protocol, TextIO, TypeVar, runtime_checkable

import httpx
from pydantic import field_validator

from monitor.config_types import DocDefault, Duration, Strict
from monitor.models import Delivery

__all__ = ["MAX_SEND_TIMEOUT", "Accepted", "Sink", "SinkDeps", "SinkSettings", "SinkType"]

#: the delivery worker's bound on one send, whatever the sink's own ``timeout``
MAX_SEND_TIMEOUT = 120.0

#: ``await on_accepted(part)``: the receiver took ``part`` (some deliveries of the batch being sent)
Accepted = Callable[[Sequence[Delivery]], Awaitable[None]]


@runtime_checkable
class Sink(Protocol):
    """The extension point for alert destinations."""

    #: the ``[sinks.NAME]`` this sink was built from
    name: str
    #: may several deliveries of one check go out as one message?
    digest: bool
    #: may one send carry the rows of many checks (everything due), each still in lines of its
    #: own? (A file sink then writes and fsyncs once for all of them; Slack and webhook pack
    #: whole checks into few posts.)
    bulk: bool
    #: the worker waits at least this long between two sends to this sink (rate limit)
    min_interval: float

    async def send(self, batch: Sequence[Delivery], on_accepted: Accepted | None = None) -> None:
        """Deliver every item of ``batch`` or raise ``SinkError``.

        A sink that sends ``batch`` as several messages awaits ``on_accepted(part)`` after each one
        the receiver took (it never raises); a sink that sends one message need not call it.
        """
        ...

    async def aclose(self) -> None:
        """Release what the sink holds (connections, log filters); called once, at the end."""
        ...


class SinkSettings(Strict):
    """What every ``[sinks.NAME]`` table may set; each sink type extends it with a ``type``."""

    title_template: Annotated[str | None, DocDefault("by the message's lines")] = None
    """overrides the message title (`string.Template` syntax: `$pair`, `$new_rate` ...;
    docs/alerts.md#message-templates); console and file have no title"""
    body_template: Annotated[str | None, DocDefault("pair line / outage line")] = None
    """overrides the message body: one line per pair per check (per outage event), same syntax"""
    timeout: Duration = 15.0
    """how long one send may take, at most `120s` (the delivery worker's own bound)"""

    @field_validator("timeout")
    @classmethod
    def _send_bound(cls, value: float) -> float:
        if not 0 < value <= MAX_SEND_TIMEOUT:
            raise ValueError(f"must be more than 0 and at most {MAX_SEND_TIMEOUT:g}s")
        return value


@dataclass(frozen=True, slots=True)
class SinkDeps:
    """What a sink factory may use besides its own settings; owned by the builder."""

    #: the HTTP sinks' shared client (the builder closes it)
    http: httpx.AsyncClient
    #: the console sinks' stream (``None``: ``sys.stdout`` at write time)
    stdout: TextIO | None = None
    #: replaces the default, system-trusting TLS context of email sinks (tests)
    smtp_tls_context: ssl.SSLContext | None = None


C = TypeVar("C", bound=SinkSettings)


@dataclass(frozen=True, slots=True)
class SinkType(Generic[C]):
    """One kind of sink: the ``type`` it answers to, its settings model, its factory.

    The factory raises ``ConfigError`` (naming ``sinks.NAME``) for settings it cannot use.
    """

    #: the ``type = "..."`` value of its ``[sinks.NAME]`` tables
    name: str
    config: type[C]
    build: Callable[[str, C, SinkDeps], Sink]

    def create(self, name: str, config: Any, deps: SinkDeps) -> Sink:
        """Build a sink from settings already validated as this type's model."""
        if not isinstance(config, self.config):
            raise TypeError(f"sink {name!r}: expected {self.config.__name__}")
        return self.build(name, config, deps)
