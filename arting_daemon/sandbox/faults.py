"""Injected faults: which request a fault fires on, and the answer it gives (§9.11-13).

A fault counts the requests to the routes it applies to. It lets the first ``after``
through, then fires on every ``every``-th one until it has fired ``count`` times.
When several faults fire on one request the oldest wins; the others do not use up
their ``count``.

Most kinds replace the answer (``respond``); ``oversized`` answers a body that never
ends (``emulator.oversized``, streamed by the server). Four only shape what the route does:
``slow`` (a ``delay`` before the normal answer), ``fail``, ``never_finish`` and
``empty_output_done``; the server reads those from the request it handles. Any kind
waits ``delay`` seconds first when one is given.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
from http import HTTPStatus

from aiohttp import web

from . import cloudflare
from . import envelope as E
from .models import Fault
from .storage import xml_error

#: Kinds that leave the answer to the route and change what it does instead.
EFFECT_KINDS = frozenset({"slow", "fail", "never_finish", "empty_output_done"})


class _Armed:
    """A fault with its counters."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.seen = 0
        self.fired = 0

    def due(self) -> bool:
        """Count one matching request; True when the fault should fire on it."""
        self.seen += 1
        n = self.seen - self.fault.after
        if n <= 0 or (n - 1) % self.fault.every:
            return False
        return self.fault.count is None or self.fired < self.fault.count


class FaultBoard:
    """The active faults, in the order they were added."""

    def __init__(self) -> None:
        self._armed: list[_Armed] = []

    def add(self, fault: Fault) -> None:
        self._armed.append(_Armed(fault))

    def clear(self) -> None:
        self._armed.clear()

    def pick(self, route: str) -> Fault | None:
        """The fault that fires on this request to ``route``, if any."""
        chosen: _Armed | None = None
        for armed in self._armed:
            if armed.fault.applies_to(route) and armed.due() and chosen is None:
                chosen = armed
        if chosen is None:
            return None
        chosen.fired += 1
        return chosen.fault

    def snapshot(self) -> list[dict]:
        return [{**a.fault.model_dump(), "seen": a.seen, "fired": a.fired} for a in self._armed]


def respond(fault: Fault, request: web.Request, rng: random.Random,
            auth_error_http: bool) -> web.StreamResponse:
    """The answer a response-replacing fault gives instead of the route's own."""
    kind = fault.kind
    if kind == "reset":
        return reset_connection(request)
    if kind.startswith("cf_"):
        return _cloudflare(fault, request.host, cloudflare.ray_id(rng))
    if kind == "storage_refused":
        return xml_error(fault.status or 403, "AccessDenied",
                         fault.message or "You have no right to access this object.",
                         cloudflare.ray_id(rng))
    if kind == "rate_limit":
        response = _envelope(fault, 429, E.TOO_MANY, "too many requests")
        response.headers["Retry-After"] = _seconds(fault.retry_after)
        return response
    if kind == "http_error":
        status = fault.status or 500
        if fault.body == "empty":
            return web.Response(status=status)
        return _envelope(fault, status, E.GENERATION_FAILED, _phrase(status))
    if kind == "truncated_json":
        return _truncated(fault)
    if kind in ("token_expired", "invalid_token"):
        message = E.EXPIRED_TOKEN if kind == "token_expired" else E.INVALID_TOKEN
        return _envelope(fault, 401 if auth_error_http else 200, E.BAD_TOKEN, message)
    defaults = {
        "quota": (200, E.QUOTA, "free credits used up"),
        "reject": (200, E.BAD_MODEL, "Model not supported"),
        "fail_code": (200, E.GENERATION_FAILED, "generation failed"),
        "expired_image": (404, E.NOT_FOUND, "file expired"),
    }
    return _envelope(fault, *defaults[kind])


def _envelope(fault: Fault, status: int, code: int, message: str) -> web.Response:
    """A JSON error envelope; the fault's own status, code and message win."""
    body = E.failure(fault.code if fault.code is not None else code, fault.message or message)
    return web.json_response(body, status=fault.status or status)


def _cloudflare(fault: Fault, host: str, ray: str) -> web.Response:
    kind = fault.kind
    headers = cloudflare.headers(ray, challenge=kind in ("cf_challenge", "cf_challenge_v2"))
    if kind == "cf_challenge":
        status, html = 403, cloudflare.managed_challenge(host, ray)
    elif kind == "cf_challenge_v2":
        status, html = 503, cloudflare.managed_challenge(host, ray, orchestrate=True)
    elif kind == "cf_html_200":
        status, html = 200, cloudflare.managed_challenge(host, ray)
    elif kind == "cf_1020":
        status, html = 403, cloudflare.error_page(1020, host, ray)
    elif kind == "cf_rate_limit":
        status, html = 429, cloudflare.error_page(1015, host, ray)
        headers["Retry-After"] = _seconds(fault.retry_after)
    else:
        status = fault.status or 522
        html = cloudflare.error_page(status, host, ray)
    return web.Response(status=fault.status or status, text=html, headers=headers)


def _truncated(fault: Fault) -> web.Response:
    """A success envelope cut off halfway, with a matching Content-Length."""
    whole = json.dumps(E.success({"request_id": "0" * 32, "status": "processing", "output": []}))
    return web.Response(status=fault.status or 200, body=whole[:len(whole) // 2].encode(),
                        content_type="application/json")


def reset_connection(request: web.Request) -> web.Response:
    """Drop the connection with a TCP RST; the client gets "connection reset", no answer."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        # Without linger control (no socket, other OS) a plain close still drops the request.
        with contextlib.suppress(AttributeError, OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response()  # never reaches the client: the transport is gone


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "HTTP error"


def _seconds(value: float | None) -> str:
    """A ``Retry-After`` value; fractions are kept so tests need not wait whole seconds."""
    return f"{2 if value is None else value:g}"
