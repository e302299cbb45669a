"""What every step of a check shares, and how it reads the exchanges it made."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict

from .. import logs
from ..config import Settings
from ..metrics import Metrics
from ..recording import Exchange, Recorder
from ..providers.arting import cloudflare
from ..providers.arting.client import SUCCESS, ArtingClient, Upstream
from ..transport.director import Director, plan_of
from .report import Report


@dataclass(frozen=True)
class Identity:
    """A token the daemon would use (or its anonymous identity), by its label."""

    label: str
    secret: str
    anonymous: bool = False

    @property
    def name(self) -> str:
        return "anonymous identity" if self.anonymous else self.label


@dataclass
class Context:
    settings: Settings
    recorder: Recorder
    report: Report
    #: The probe of a path that does not exist (``probes.NO_SUCH_PATH``): how Arting
    #: answers for an endpoint it does not have.
    absent: Any = None
    clients: list[ArtingClient] = field(default_factory=list)

    def client(self, **changes: Any) -> ArtingClient:
        """An Arting client whose every exchange is recorded; ``changes`` alter its settings
        (e.g. without the configured clearance), never the daemon's. Closed by ``close``."""
        settings = self.settings.model_copy(update=changes) if changes else self.settings
        director = Director(plan_of(settings), settings.impersonate, settings.base_url)
        client = ArtingClient(Upstream.of(settings), director, Metrics(),
                              observe=self.recorder)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


def api_answer(exchanges: list[Exchange]) -> Exchange | None:
    """The last answer the client itself got to an API call (not the solver's, not an
    image download)."""
    return next((e for e in reversed(exchanges)
                 if e.via == "aiohttp" and e.method == "POST" and e.status is not None), None)


def envelope(exchange: Exchange | None) -> dict | None:
    """The answer's JSON object when it is one."""
    payload = exchange.json() if exchange is not None else None
    return payload if isinstance(payload, dict) else None


def envelope_data(exchange: Exchange | None) -> dict:
    data = (envelope(exchange) or {}).get("data")
    return data if isinstance(data, dict) else {}


def shape(exchange: Exchange | None) -> tuple:
    """What tells two answers apart: HTTP status, code, message."""
    payload = envelope(exchange) or {}
    return (exchange.status if exchange else None, payload.get("code"), payload.get("message"))


def is_success(payload: dict) -> bool:
    return payload.get("code") in (SUCCESS, str(SUCCESS))


def cloudflare_kind(exchange: Exchange) -> str | None:
    """``challenge``, ``firewall``, ``rate_limit``, ``origin_error`` when Cloudflare's page
    stood where Arting's JSON should be (read as the client reads it: HTML only)."""
    if exchange.status is None:
        return None
    text = exchange.response_body.decode("utf-8", "replace")
    if "html" not in exchange.header("Content-Type").lower() and text.lstrip()[:1] != "<":
        return None
    return cloudflare.classify(exchange.status, CIMultiDict(exchange.response_headers), text)


def describe(exchange: Exchange | None) -> str:
    """An answer in a few words: ``HTTP 200, code 100404 "task not found"``."""
    if exchange is None:
        return "no answer"
    if exchange.status is None:
        return f"no answer ({exchange.error})"
    payload = envelope(exchange)
    if payload is None:
        kind = exchange.header("Content-Type").split(";")[0] or "no Content-Type"
        return f"HTTP {exchange.status}, {kind}, {len(exchange.response_body)} bytes"
    message = payload.get("message", payload.get("msg"))
    said = f' "{logs.redact(message)[:200]}"' if isinstance(message, str) and message else ""
    if "code" not in payload:
        return f"HTTP {exchange.status}, JSON without a code{said}"
    return f"HTTP {exchange.status}, code {payload['code']}{said}"
