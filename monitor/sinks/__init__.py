"""Alert sinks: where outbox deliveries go.

A sink is anything that implements :class:`Sink`. The delivery worker (``monitor.outbox``) hands it a
batch of deliveries (several only when ``digest`` is true: what one check produced for this sink),
and the sink either returns (every delivery in the batch is accepted) or raises
:class:`monitor.errors.SinkError` saying whether the failure is ``retryable``. A sink never raises
any other exception type: it translates its library's errors at its own boundary, and it never puts
a secret (webhook URL, password, token) into an error message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from monitor.models import Delivery


@runtime_checkable
class Sink(Protocol):
    """The extension point for alert destinations."""

    #: the ``[sinks.NAME]`` this sink was built from
    name: str
    #: may several deliveries of one check go out as one message?
    digest: bool
    #: the worker waits at least this long between two sends to this sink (rate limit)
    min_interval: float

    async def send(self, batch: Sequence[Delivery]) -> None:
        """Deliver every item of ``batch`` or raise ``SinkError``."""
        ...

    async def aclose(self) -> None:
        """Release connections; called once at shutdown."""
        ...
