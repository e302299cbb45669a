"""The one place that picks the client carrying a request, by the features it needs (its
destination, the proxy, the impersonation in force), as yt-dlp's request director picks
a handler. Whoever asks gets an answer, or one of a few errors, and never learns which
client carried it.

For Arting (``Director``):

* the **light pool** (``providers/arting/wire.py``: kept-alive HTTP/1.1 connections,
  about 50 µs of CPU an exchange), direct or tunnelled through the proxy itself, carries
  everything by default: the API calls, the result images, the signed upload;
* the **browser-like client** (curl_cffi: libcurl with a browser's TLS and HTTP/2
  fingerprints, header order and client hints) carries an identity's API calls when
  ``impersonate`` names a browser profile, or, with ``auto``, from the first Cloudflare
  challenge that identity met on the light pool on (``escalate``). Each identity has a
  session of its own, so the cookies Cloudflare gives one are kept for it and sent again;
* **cloudscraper** comes last, in the Cloudflare solver (``providers/arting/cloudflare.py``,
  through ``proxy_for`` too): its clearance is bound to its own User-Agent and TLS, so an
  identity it cleared goes back to the light pool (``settle``).

For the rest (``aiohttp_route``): **aiohttp**, through an http(s) proxy natively, through
a SOCKS5 proxy with aiohttp-socks' connector (one session per such proxy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from ..config import Settings
from ..providers.arting import wire
from .proxies import Proxy, ProxyPlan, netloc
from .tunnel import ProxyFailure

if TYPE_CHECKING:
    from curl_cffi.requests import AsyncSession, HttpMethod

log = logging.getLogger(__name__)

LIGHT, BROWSER = "light", "browser"
#: The profile ``auto`` switches to: curl_cffi's newest Chrome.
AUTO_PROFILE = "chrome"
#: What Chrome sends with a fetch from arting.ai to its API (curl_cffi's defaults are a
#: page load's).
FETCH_HEADERS = {"sec-fetch-site": "same-site", "sec-fetch-mode": "cors",
                 "sec-fetch-dest": "empty"}


def plan_of(settings: Settings, environ: Mapping[str, str] | None = None) -> ProxyPlan:
    """The daemon's proxies: the ``proxy`` setting, else the environment's. The
    in-process emulator (``--sandbox``) is reached directly: it is on this machine's
    loopback, which a proxy elsewhere cannot reach."""
    parts = urlsplit(settings.base_url)
    direct = [netloc(parts.hostname or "", parts.port or 80)] if settings.sandbox else []
    return ProxyPlan.of(settings.proxy.get_secret_value() if settings.proxy else None,
                        settings.no_proxy, os.environ if environ is None else environ, direct)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class Director:
    """Carries Arting's requests (the API's, the images', the upload's) by the client
    each needs. ``identity``: the token a request is made with (None: no token)."""

    def __init__(self, plan: ProxyPlan, impersonate: str, api_base: str,
                 limit: int = 64) -> None:
        """``limit``: connections at once to one origin."""
        self.plan = plan
        self.limit = limit
        self.impersonate = impersonate
        self.api = origin_of(api_base)
        #: Labels of the identities (``token-1``) for the log; never their secrets.
        self.names: dict[str, str] = {}
        self._origins: dict[tuple[str, Proxy | None], wire.Origin] = {}
        self._browsers: dict[str | None, AsyncSession] = {}
        self._switched: set[str | None] = set()   # auto: met a challenge on the light pool
        self._settled: set[str | None] = set()    # cleared by cloudscraper: light again
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    # --- which client ---------------------------------------------------------------------

    @property
    def profile(self) -> str | None:
        """The browser profile curl_cffi impersonates (None: impersonation is off)."""
        if self.impersonate == "off":
            return None
        return AUTO_PROFILE if self.impersonate == "auto" else self.impersonate

    def client_for(self, url: str, identity: str | None = None) -> str:
        """``light`` or ``browser``: which client carries a request to ``url``. Only an
        identity's calls to the API go through the browser-like client: images and
        uploads (no identity) cost the light pool's CPU wherever they are."""
        if identity is None or origin_of(url) != self.api or self.profile is None \
                or identity in self._settled:
            return LIGHT
        if self.impersonate == "auto" and identity not in self._switched:
            return LIGHT
        return BROWSER

    def carrier(self, identity: str | None = None) -> str:
        """What carries an identity's API calls, in words for the status and the check."""
        proxy = self.plan.for_url(self.api + "/")
        via = f" through {proxy}" if proxy else ""
        if self.client_for(self.api + "/", identity) == BROWSER:
            return f"browser-like client (curl_cffi, {self.profile}){via}"
        return f"light pool{via}" + (", cloudscraper's clearance"
                                     if identity in self._settled else "")

    def escalate(self, identity: str | None) -> bool:
        """A Cloudflare challenge met on the light pool: with ``auto``, the identity's
        traffic moves to the browser-like client. True when it did (try again)."""
        if self.impersonate != "auto" or identity in self._switched \
                or identity in self._settled:
            return False
        self._switched.add(identity)
        log.warning("Cloudflare challenged %s's request on the light pool: its requests go "
                    "through the browser-like client (curl_cffi, %s) from now on",
                    self._name(identity), self.profile)
        return True

    def settle(self, identity: str | None) -> None:
        """cloudscraper passed the challenge: its clearance goes with the light pool."""
        if self.client_for(self.api + "/", identity) == BROWSER:
            log.warning("%s's requests go through the light pool with cloudscraper's "
                        "clearance from now on (the browser-like client was challenged too)",
                        self._name(identity))
        self._settled.add(identity)

    def proxy_for(self, url: str) -> Proxy | None:
        return self.plan.for_url(url)

    def _name(self, identity: str | None) -> str:
        return self.names.get(identity, "an identity") if identity else "a request without a token"

    # --- carrying -------------------------------------------------------------------------

    async def exchange(self, method: str, url: str, headers: Mapping[str, str],
                       body: bytes | None, timeout: float, *,
                       max_bytes: int = wire.MAX_ANSWER_BYTES,
                       identity: str | None = None) -> wire.Response:
        """One exchange. Raises ``ProxyFailure``, ``wire.ConnectError``,
        ``wire.TooLarge``, ``ConnectionError`` or ``TimeoutError``."""
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        proxy = self.plan.for_url(url)
        if self.client_for(url, identity) == BROWSER:
            return await self._browser(method, url, dict(headers), body, timeout, max_bytes,
                                       identity, proxy)
        return await self._origin(url, proxy).request(method, target, dict(headers), body,
                                                      timeout, max_bytes=max_bytes)

    def _origin(self, url: str, proxy: Proxy | None) -> wire.Origin:
        """The kept-alive connections to one origin (the API's, or a few image hosts':
        the outbound policy lets only trusted ones through), through one proxy."""
        key = (origin_of(url), proxy)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = wire.Origin(key[0], self.limit, proxy)
        return origin

    async def _browser(self, method: str, url: str, headers: dict[str, str],
                       body: bytes | None, timeout: float, max_bytes: int,
                       identity: str | None, proxy: Proxy | None) -> wire.Response:
        """curl_cffi on its asyncio session: libcurl's multi interface driven by the
        event loop's readers and writers, nothing blocks."""
        from curl_cffi.requests.exceptions import RequestException

        session = self._session(identity)
        headers.pop("User-Agent", None)          # the profile's own, matching its hints
        cookies = _cookies(headers.pop("Cookie", None))
        try:
            response = await session.request(
                cast("HttpMethod", method), url, headers={**headers, **FETCH_HEADERS}, data=body,
                cookies=cookies, timeout=timeout, allow_redirects=False,
                proxy=proxy.url if proxy else None)
        except RequestException as exc:
            raise _curl_failure(exc, proxy, url) from None
        content = response.content
        if len(content) > max_bytes:
            raise wire.TooLarge(f"an answer larger than {max_bytes} bytes")
        answer_headers: CIMultiDict[str] = CIMultiDict()
        for name, value in response.headers.multi_items():
            answer_headers.add(name, value)
        return wire.Response(response.status_code, CIMultiDictProxy(answer_headers), content)

    def _session(self, identity: str | None) -> AsyncSession:
        """The identity's own curl_cffi session: its cookies are its own."""
        session = self._browsers.get(identity)
        if session is None:
            from curl_cffi.requests import AsyncSession

            session = self._browsers[identity] = AsyncSession(impersonate=self.profile)
        return session

    async def close(self) -> None:
        self._closed = True
        for origin in self._origins.values():
            origin.close()
        sessions, self._browsers = list(self._browsers.values()), {}
        for session in sessions:
            with contextlib.suppress(Exception):
                await session.close()


def _cookies(header: str | None) -> dict[str, str] | None:
    if not header:
        return None
    pairs = (part.strip().partition("=") for part in header.split(";"))
    return {name: value for name, _, value in pairs if name}


def _curl_failure(exc: Exception, proxy: Proxy | None, url: str) -> Exception:
    """curl's errors as the light pool's: ``TimeoutError``, ``ProxyFailure``,
    ``wire.ConnectError`` or ``ConnectionError``. curl's own words may hold the proxy's
    URL: they are left out."""
    from curl_cffi.requests.exceptions import Timeout

    code = getattr(exc, "code", 0) or 0
    text = str(exc).split(". See https://", 1)[0].removeprefix("Failed to perform, ")
    if isinstance(exc, Timeout) or code == 28:
        return TimeoutError(text)
    if proxy is not None:
        lowered = text.lower()
        if "407" in text or "authentication" in lowered or "rejected" in lowered:
            return ProxyFailure(proxy, "refused", f"curl: error {code}")
        if code == 5 or (code == 7 and "over proxy" in lowered):
            return ProxyFailure(proxy, "unreachable", f"curl: error {code}")
        if code == 97 and "closed" in lowered:
            return ProxyFailure(proxy, "refused" if proxy.username else "unreachable",
                                "it closed the connection during the SOCKS5 handshake")
        if "connect tunnel failed" in lowered or code == 97:
            return ProxyFailure(proxy, "destination", f"curl: error {code}",
                                urlsplit(url).netloc)
    if code in (6, 7, 35, 60):
        return wire.ConnectError(f"curl: error {code}")
    return ConnectionError(f"curl: error {code}")


# --- aiohttp, for everything that is not Arting's ------------------------------------------

class Sessions:
    """aiohttp sessions by proxy: the shared one (direct, or an http(s) proxy named with
    each request), and one per SOCKS5 proxy (aiohttp-socks' connector)."""

    def __init__(self, shared: aiohttp.ClientSession, plan: ProxyPlan) -> None:
        self.shared = shared
        self.plan = plan
        self._socks: dict[Proxy, aiohttp.ClientSession] = {}

    def route(self, url: str, plan: ProxyPlan | None = None
              ) -> tuple[aiohttp.ClientSession, dict[str, Any], Proxy | None]:
        """The session to send ``url`` with, the request's extra arguments, and the proxy
        (``plan``: a provider's own, else the daemon's)."""
        proxy = (plan or self.plan).for_url(url)
        if proxy is None:
            return self.shared, {}, None
        if not proxy.socks:
            return self.shared, aiohttp_proxy(proxy), proxy
        session = self._socks.get(proxy)
        if session is None:
            session = self._socks[proxy] = socks_session(proxy)
        return session, {}, proxy

    async def close(self) -> None:
        sessions, self._socks = list(self._socks.values()), {}
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


def aiohttp_proxy(proxy: Proxy) -> dict[str, Any]:
    """aiohttp's own argument for an http(s) proxy (it speaks TLS to an https one). The
    credentials go in the URL: aiohttp sends them with a forwarded http request too,
    which it does not do with ``proxy_headers``."""
    return {"proxy": proxy.url}


def socks_session(proxy: Proxy, **connector: Any) -> aiohttp.ClientSession:
    """A session whose every connection goes through a SOCKS5 proxy."""
    from aiohttp_socks import ProxyConnector, ProxyType

    return aiohttp.ClientSession(
        connector=ProxyConnector(proxy.host, proxy.port, ProxyType.SOCKS5,
                                 username=proxy.username, password=proxy.password,
                                 rdns=proxy.scheme == "socks5h", **connector),
        cookie_jar=aiohttp.DummyCookieJar())


def aiohttp_failure(exc: Exception, proxy: Proxy | None, url: str) -> ProxyFailure | None:
    """An aiohttp (or aiohttp-socks) failure that is the proxy's, as a ``ProxyFailure``."""
    if proxy is None:
        return None
    from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError

    destination = urlsplit(url).netloc
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        if exc.status == 407:
            return ProxyFailure(proxy, "refused", "it answered HTTP 407")
        return ProxyFailure(proxy, "destination", f"it answered HTTP {exc.status}", destination)
    if isinstance(exc, (aiohttp.ClientProxyConnectionError, ProxyConnectionError,
                        ProxyTimeoutError)):
        return ProxyFailure(proxy, "unreachable", type(exc).__name__)
    if isinstance(exc, ProxyError):
        said = str(exc).lower()
        if "auth" in said or "closed" in said:
            return ProxyFailure(proxy, "refused" if proxy.username else "unreachable",
                                "the SOCKS5 login failed")
        return ProxyFailure(proxy, "destination", str(exc)[:80], destination)
    return None
