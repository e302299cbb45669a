"""What the operator must hear about the Arting tokens, at once and everywhere.

An event (``token_refused``: Arting refused a token; ``low_balance``: its
``remain_balance`` fell below ``low_balance``; ``pool_exhausted``: no token is usable)
goes to the log, to ``/arting/v1/status`` (the latest ones), to the metric
``arting_operator_events_total`` and, with ``operator_webhook_url`` and
``webhook_secret``, to the webhooks' delivery store (``webhooks.py``, message type
``operator.<event>``): journaled like a job's webhook, signed the Standard Webhooks way,
retried for ``webhook_retry_for`` seconds with the event's id as ``webhook-id``, and
carried over a restart. Tokens are named by label, never by value.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .clock import SYSTEM, Clock
from .config import Section
from .metrics import Metrics
from .providers.arting.tokens import Token

if TYPE_CHECKING:
    from .webhooks import Webhooks

log = logging.getLogger(__name__)

#: The events kept for the status.
KEPT = 50


@dataclass(frozen=True)
class OperatorSettings(Section):
    operator_webhook_url: str | None


@dataclass(frozen=True)
class Event:
    id: str
    event: str
    token: str | None
    message: str
    at: float

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "event": self.event, "token": self.token,
                "message": self.message, "at": self.at}


class OperatorEvents:
    def __init__(self, settings: OperatorSettings, metrics: Metrics,
                 clock: Clock = SYSTEM) -> None:
        self.url = settings.operator_webhook_url
        self.clock = clock
        self.recent: deque[Event] = deque(maxlen=KEPT)
        self.counts = metrics.operator_events
        self.webhooks: Webhooks | None = None
        self._early: list[Event] = []   # raised before the webhooks started (the probes)

    def attach(self, webhooks: Webhooks | None) -> None:
        """Deliver through ``webhooks`` from now on (None: they stopped)."""
        self.webhooks = webhooks
        early, self._early = self._early, []
        for found in early:
            self._send(found)

    def raised(self, event: str, token: Token | None, message: str) -> None:
        """An event happened (the token pool calls this)."""
        found = Event(f"msg_{uuid.uuid4().hex}", event, token.label if token else None,
                      message, self.clock.time())
        self.recent.append(found)
        self.counts.labels(event).inc()
        log.warning("operator event %s: %s", event, message)
        self._send(found)

    def _send(self, found: Event) -> None:
        if not self.url:
            return
        if self.webhooks is None:
            self._early.append(found)
            return
        self.webhooks.send(self.url, found.id, f"operator.{found.event}", found.at,
                           found.view())
