"""Recognising Cloudflare's pages where Arting's JSON should be, and passing what can be
passed.

The checks follow what is known of Cloudflare's pages (``docs/protocol/arting.md`` §7):
every page comes with ``Server: cloudflare``; challenges carry ``cf-mitigated:
challenge`` or the "Just a moment..." markers; blocks carry an error code such as
1020 (firewall) or 1015 (rate limited); 52x pages mean Cloudflare could not reach
Arting.

On a challenge, ``Solver`` lets cloudscraper (a blocking ``requests`` library) try
once, in a worker thread so the event loop never waits on it. If it gets Arting's
answer, its cookies and User-Agent become the clearance every later request carries.
If not, the error says what to configure, and for a while further challenges fail at
once instead of starting cloudscraper again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ... import logs
from ...errors import CloudflareBlocked
from ...recording import watch
from ...tasks import wait_for

if TYPE_CHECKING:
    from ...metrics import Metrics
    from ...transport.proxies import Proxy
    from ...recording import Observer

log = logging.getLogger(__name__)

#: After a failed attempt, challenges fail at once for this long (seconds).
SOLVE_RETRY = 60.0

#: Cloudflare's origin errors that mean Arting never received the request (its server
#: was down, unreachable or failed the TLS handshake), so nothing was created there.
#: 520 (unknown) and 524 (Arting took the request and was too slow) promise nothing.
ORIGIN_NEVER_REACHED = frozenset({521, 522, 523, 525, 526})

_CHALLENGE_MARKERS = ("_cf_chl_opt", "<title>Just a moment...</title>",
                      "/cdn-cgi/challenge-platform/", "challenge-form")
_ERROR_CODE = re.compile(r'class="cf-error-code">\s*(\d{3,4})\s*<')


def classify(status: int, headers: Mapping[str, str], text: str) -> str | None:
    """Return ``challenge``, ``firewall``, ``rate_limit``, ``origin_error`` or None."""
    server = headers.get("Server", headers.get("server", "")).lower()
    is_html = "html" in headers.get("Content-Type", headers.get("content-type", "")).lower()
    if not server.startswith("cloudflare") and not (is_html and "cloudflare" in text.lower()):
        return None
    if headers.get("cf-mitigated", "").lower() == "challenge" or any(
            marker in text for marker in _CHALLENGE_MARKERS):
        return "challenge"
    code = _ERROR_CODE.search(text)
    if code and code[1] == "1015" or status == 429:
        return "rate_limit"
    if code and code[1].startswith("10"):
        return "firewall"
    if status >= 520 or (code and code[1].startswith("5")):
        return "origin_error"
    return "firewall" if status == 403 else None


ADVICE = {
    "challenge": ("Cloudflare is showing a browser challenge instead of Arting's API. Open "
                  "arting.ai in a browser, pass the check, then copy the `cf_clearance` cookie "
                  "into `cf_clearance` (ARTING_CF_CLEARANCE) and that browser's exact "
                  "User-Agent into `user_agent` (ARTING_USER_AGENT)."),
    "firewall": ("Cloudflare blocked this machine's address (firewall rule, error 1020). "
                 "Try another network or proxy; a token change will not help."),
    "rate_limit": "Cloudflare is rate-limiting this address (error 1015); wait and retry.",
    "origin_error": "Cloudflare could not reach Arting's servers (5xx); Arting is down or "
                    "overloaded, retry later.",
}


@dataclass(frozen=True)
class Clearance:
    """What a browser (or cloudscraper) that passed the challenge sends: its cookies and
    its exact User-Agent; Cloudflare accepts the cookies only with that User-Agent."""

    user_agent: str
    cookies: dict[str, str] = field(default_factory=dict)

    def cookie_header(self) -> str | None:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items()) or None


class _Unsolved(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


class Solver:
    """Holds the clearance and runs cloudscraper, one attempt at a time, off the loop."""

    def __init__(self, user_agent: str, cookie: str | None, enabled: bool, timeout: float,
                 metrics: Metrics, observe: Observer | None = None,
                 proxy: Proxy | None = None) -> None:
        """``cookie``: a configured ``cf_clearance``; ``enabled``: let cloudscraper try;
        ``observe``: sees cloudscraper's exchange too; ``proxy``: the one Arting is
        reached through."""
        self.clearance = Clearance(user_agent, {"cf_clearance": cookie} if cookie else {})
        self.configured = cookie is not None
        self.enabled = enabled
        self.timeout = timeout
        self.metrics = metrics
        self.observe = observe
        self.proxy = proxy
        self._lock = asyncio.Lock()
        self._gave_up: tuple[float, str, str] | None = None   # (when, kind, message)
        self.last_reason: str | None = None    # why the last attempt failed, in a few words

    @property
    def last_failure(self) -> str | None:
        """The advice of the last failed attempt, until one succeeds."""
        return self._gave_up[2] if self._gave_up else None

    async def solve(self, url: str, headers: dict[str, str], body: dict,
                    seen: Clearance) -> None:
        """Get a clearance that passes, or raise ``CloudflareBlocked`` with advice.

        ``url``/``headers``/``body`` make a harmless request (a poll, never a create);
        ``seen`` is the clearance the challenged request carried: if another request
        has replaced it meanwhile, that one is tried first.
        """
        async with self._lock:
            if self.clearance is not seen:
                return
            if self._gave_up and time.monotonic() - self._gave_up[0] < SOLVE_RETRY:
                raise CloudflareBlocked(self._gave_up[2], kind=self._gave_up[1])
            if not self.enabled:
                raise self._give_up("challenge", "cf_solver is off", None)
            with watch(self.observe, "POST", url, headers, body, via="cloudscraper") as told:
                try:
                    status, answer_headers, text, cookies, agent = await wait_for(
                        asyncio.to_thread(_scrape, url, headers, body, self.timeout,
                                          self.proxy),
                        self.timeout + 5)
                except _Unsolved as exc:
                    raise self._give_up(exc.kind, exc.reason, "firewall"
                                        if exc.kind == "firewall" else "failed") from None
                except asyncio.TimeoutError:
                    raise self._give_up("challenge", f"no answer within {self.timeout + 5:g} s",
                                        "failed") from None
                told.answer(status, answer_headers, text.encode())
            kind = classify(status, answer_headers, text)
            if kind in ("challenge", "firewall"):
                raise self._give_up(kind, f"Cloudflare still answered HTTP {status} with its "
                                          f"{kind} page", "failed")
            logs.add_secrets(*cookies.values())
            self.clearance = Clearance(agent, cookies)
            self.configured, self._gave_up = False, None
            self.metrics.cloudflare_solves.labels("solved").inc()
            log.info("passed a Cloudflare challenge with cloudscraper; its clearance "
                     "(%d cookie(s), its User-Agent) is used from now on", len(cookies))

    def refused(self) -> CloudflareBlocked:
        """The error for a challenge met again right after a solve."""
        return self._give_up("challenge", "Cloudflare did not accept cloudscraper's clearance",
                             "refused")

    def _give_up(self, kind: str, reason: str, result: str | None) -> CloudflareBlocked:
        """Remember the failure (so the next challenges fail at once) and say what to do."""
        if result is not None:
            self.metrics.cloudflare_solves.labels(result).inc()
        message = ADVICE.get(kind, ADVICE["challenge"])
        if kind == "challenge":
            if self.configured:
                message += (" The configured `cf_clearance` is no longer accepted (it expires, "
                            "and only works with the User-Agent of the browser it came from).")
            message += f" (Automatic solving failed: {reason}.)"
        self._gave_up = (time.monotonic(), kind, message)
        self.last_reason = reason
        log.warning("Cloudflare challenge not passed: %s", reason)
        return CloudflareBlocked(message, kind=kind)


def _scrape(url: str, headers: dict[str, str], body: dict, timeout: float,
            proxy: Proxy | None):
    """In a worker thread: send the request with cloudscraper and return what it got
    (through ``proxy``: requests speaks SOCKS with PySocks)."""
    import cloudscraper
    import requests
    from cloudscraper.exceptions import CloudflareCode1020, CloudflareException

    limit = getattr(sys, "tracebacklimit", None)
    try:
        with cloudscraper.create_scraper(
                browser={"browser": "chrome", "platform": "windows", "mobile": False}) as s:
            if proxy is not None:
                s.proxies = {"http": proxy.url, "https": proxy.url}
            try:
                resp = s.post(url, data=json.dumps(body), headers=headers, timeout=timeout)
            except CloudflareCode1020:
                raise _Unsolved("firewall", "Cloudflare error 1020") from None
            except CloudflareException as exc:
                raise _Unsolved("challenge", f"cloudscraper: {type(exc).__name__}") from None
            except requests.exceptions.ProxyError as exc:
                raise _Unsolved("challenge", f"the proxy failed it ({_proxy_said(exc)})") \
                    from None
            except requests.RequestException as exc:
                raise _Unsolved("challenge", f"{type(exc).__name__} while solving") from None
            return (resp.status_code, dict(resp.headers), resp.text, s.cookies.get_dict(),
                    s.headers["User-Agent"])
    finally:
        # cloudscraper sets sys.tracebacklimit = 0 (for the whole process) when it gives up.
        if limit is None:
            with contextlib.suppress(AttributeError):
                del sys.tracebacklimit
        else:
            sys.tracebacklimit = limit


def _proxy_said(exc: Exception) -> str:
    """What requests says of a proxy's failure, without the proxy's URL (it names it with
    its credentials)."""
    text = str(exc)
    if "407" in text:
        return "it answered HTTP 407: wrong credentials"
    return "could not reach it" if "connect" in text.lower() else type(exc).__name__
