"""What the providers that answer over plain HTTP share (A1111, OpenAI-compatible,
Midjourney's proxies, Stability AI).

* ``RemoteAPI``: one request funnel per provider. It talks only to the ``base_url`` the
  operator configured (no redirects followed; result images only from that host or the
  provider's ``image_hosts``, judged by the daemon's ``OutboundPolicy``), bounds every
  answer's size, and turns every way the
  exchange can fail into the error taxonomy (``errors.py``), in words that name the
  provider and say what to do. Nothing the provider sent is passed on raw: at most a
  short, redacted excerpt of its own message.
* ``RemoteProvider`` and ``RemoteAttempt``: what every such provider and its attempts
  keep (its entry's basics, its funnel, the store); ``Polling``, the schedule of those
  that follow a task upstream.
* ``SyncProvider``: a provider whose upstream makes the images in one blocking call.
  Its attempt has nothing to send ahead (``submit`` only starts the clock); ``follow``
  makes the call and keeps the images in the store (outputs ``store:<hash>``), so a
  restart during the download finds them there. Such an upstream holds no job one could
  follow after a restart, so ``submitted`` is always false: a job caught in flight is
  run again if the provider is ``free_to_repeat``, else failed with "submit it again".
  If the job is cancelled or runs out of time during the call, the attempt asks the
  upstream to stop (``interrupt``) before it lets go of the provider.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from pydantic import SecretStr
from python_socks import ProxyError as SocksError

from .. import logs
from ..config import Section
from ..errors import (BadUpstreamResponse, ContentRefused, FeatureDisabled,
                      UpstreamAuthError, UpstreamInvalid, UpstreamRateLimited,
                      UpstreamRejected, UpstreamServerError, UpstreamTimeout,
                      UpstreamUnavailable, UpstreamUnreachable)
from ..outbound import OutboundPolicy
from ..provider_config import ProviderConfig, credentials
from ..retry import backoff, retry_after
from ..store import ImageStore
from ..transport.director import Sessions, aiohttp_failure
from ..transport.proxies import Proxy, ProxyPlan
from ..transport.tunnel import ProxyFailure
from .base import Attempt, OnProgress, Provider, Work
from ..tasks import wait_for

#: Largest answer read from a provider: a few base64 images in JSON.
MAX_ANSWER_BYTES = 96 * 1024 * 1024
MAX_IMAGE_BYTES = 50 * 1024 * 1024
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF", b"GIF8")
STORED = "store:"
#: Seconds an interrupt of a cancelled job may take before the attempt lets go.
INTERRUPT_WAIT = 5.0
#: Words in a provider's refusal that mean the prompt or image was refused.
CONTENT_CODES = ("content_policy_violation", "moderation_blocked", "content_refused")


@dataclass(frozen=True)
class Reply:
    """An answer as it came: its status, headers and (size-bounded) body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Endpoint:
    """Where a provider is and how to get in: its base URL, its credentials as headers
    (never shown: ``repr`` leaves them out), and its time limits."""

    name: str
    label: str
    kind: str
    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    request_timeout: float = 30.0
    #: Seconds one generation call may take (None: the runner's ``run_timeout`` bounds it).
    timeout: float | None = None
    image_hosts: tuple[str, ...] = ()

    @property
    def advice(self) -> str:
        """Where its credentials are set, for the messages of refused requests."""
        return f"set {credentials(self.kind)} of provider `{self.name}` in arting.toml"


def endpoint(cfg: ProviderConfig, request_timeout: float) -> Endpoint:
    headers = {"Accept": "application/json"}
    if cfg.api_key is not None:
        headers["Authorization"] = f"Bearer {cfg.api_key.get_secret_value()}"
    if cfg.username is not None and cfg.password is not None:
        pair = f"{cfg.username}:{cfg.password.get_secret_value()}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        logs.add_secrets(headers["Authorization"].split(" ", 1)[1])
    assert cfg.base_url is not None
    return Endpoint(cfg.name, cfg.title, cfg.kind, cfg.base_url, headers, request_timeout,
                    cfg.timeout, tuple(h.lower() for h in cfg.image_hosts))


def funnel(where: Endpoint, sessions: Sessions, proxy: SecretStr | None) -> RemoteAPI:
    """A provider's request funnel: through its own ``proxy``, if it has one, else the
    daemon's."""
    return RemoteAPI(where, sessions,
                     sessions.plan.replaced(proxy.get_secret_value() if proxy else None))


@dataclass(frozen=True)
class Polling(Section):
    """How often a provider that follows a task upstream asks about it: from
    ``poll_min_interval``, half as long again each time, up to ``poll_max_interval``;
    after failures, backoff."""

    poll_min_interval: float
    poll_max_interval: float

    def delay(self, polls: int, failures: int = 0) -> float:
        if failures:
            return min(self.poll_max_interval, backoff(failures))
        return min(self.poll_max_interval, self.poll_min_interval * 1.5 ** min(polls, 40))


class RemoteAPI:
    """One provider's request funnel: JSON in and out, typed errors out; through the
    provider's proxy (``plan``) if it has one."""

    def __init__(self, where: Endpoint, sessions: Sessions, plan: ProxyPlan) -> None:
        self.where = where
        self.sessions = sessions
        self.plan = plan
        self.policy = OutboundPolicy(list(where.image_hosts), where.base_url)

    async def call(self, method: str, path: str, *, body: Any = None,
                   form: aiohttp.FormData | None = None, long: bool = False) -> Any:
        """``method`` ``base_url + path`` and return the JSON answer. ``long`` marks the
        generation call, bounded by the provider's ``timeout`` instead of
        ``request_timeout``."""
        return self.read(path, await self.exchange(method, path, body=body, form=form,
                                                   long=long))

    def read(self, path: str, reply: Reply) -> Any:
        """An answer as JSON, or the error it means."""
        return _interpret(self.where, path, reply.status, reply.headers, reply.body)

    async def exchange(self, method: str, path: str, *, body: Any = None,
                       form: aiohttp.FormData | aiohttp.MultipartWriter | None = None,
                       long: bool = False) -> Reply:
        """The answer as it came (for a provider that reads it its own way); a failed
        exchange raises as ``call`` does."""
        w = self.where
        total = w.timeout if long else w.request_timeout
        timeout = aiohttp.ClientTimeout(total=total, sock_connect=min(w.request_timeout, 10.0))
        session, extra, proxy = self.sessions.route(w.base_url, self.plan)
        try:
            async with session.request(
                    method, w.base_url + path, headers=w.headers, timeout=timeout,
                    allow_redirects=False, data=form,
                    json=body if form is None else None, **extra) as resp:
                _proxy_answer(resp.status, proxy)
                raw = await _bounded(resp, MAX_ANSWER_BYTES, f"{w.label}'s answer")
                return Reply(resp.status, resp.headers, raw)
        except asyncio.TimeoutError:
            limit = total if total is not None else 0
            raise UpstreamTimeout(f"{w.label} did not answer {path} within {limit:g} s"
                                  + (f" (the `timeout` of provider `{w.name}`)." if long
                                     else " (request_timeout).")) from None
        except (aiohttp.ClientError, SocksError, OSError) as exc:
            if (failed := aiohttp_failure(exc, proxy, w.base_url)) is not None:
                raise failed.as_error() from None
            if not isinstance(exc, aiohttp.ClientConnectorError):
                raise UpstreamUnavailable(f"The connection to {w.label} broke during {path} "
                                          f"({type(exc).__name__}).") from None
            raise UpstreamUnreachable(f"{w.label} could not be reached at {w.base_url} "
                                      f"({type(exc).__name__}); is it running, and is "
                                      f"`base_url` of provider `{w.name}` right?") from None

    async def download(self, url: str) -> bytes:
        """A result image the provider gave as a URL: only from its own host or its
        ``image_hosts``, size-bounded."""
        w = self.where
        host = (urlsplit(url).hostname or "").lower()
        if not self.policy.trusted(host):
            raise BadUpstreamResponse(
                f"{w.label} answered with an image on host {host!r}, which is neither its "
                f"own nor in `image_hosts` of provider `{w.name}`; add it there if you "
                "trust it.", retryable=False)
        session, extra, proxy = self.sessions.route(url, self.plan)
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(
                    total=w.request_timeout), allow_redirects=False, **extra) as resp:
                _proxy_answer(resp.status, proxy)
                if resp.status != 200:
                    cls = UpstreamUnavailable if resp.status >= 500 else UpstreamRejected
                    raise cls(f"{w.label}'s result image answered HTTP {resp.status}.")
                data = await _bounded(resp, MAX_IMAGE_BYTES, f"{w.label}'s result image")
        except asyncio.TimeoutError:
            raise UpstreamTimeout(f"Downloading {w.label}'s result image timed out.") from None
        except (aiohttp.ClientError, SocksError, OSError) as exc:
            if (failed := aiohttp_failure(exc, proxy, url)) is not None:
                raise failed.as_error() from None
            raise UpstreamUnavailable(f"Downloading {w.label}'s result image failed "
                                      f"({type(exc).__name__}).") from None
        return image_bytes(data, w.label)


def _proxy_answer(status: int, proxy: Proxy | None) -> None:
    """An http destination through an http proxy: a 407 is the proxy's, not the
    provider's."""
    if status == 407 and proxy is not None:
        raise ProxyFailure(proxy, "refused", "it answered HTTP 407").as_error()


async def _bounded(resp: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > limit:
            raise BadUpstreamResponse(f"{what} is larger than {limit // 2**20} MiB.",
                                      retryable=False)
        chunks.append(chunk)
    return b"".join(chunks)


def image_bytes(data: bytes | str, label: str) -> bytes:
    """An image as bytes, from bytes or (data-URL) base64; anything else is refused."""
    if isinstance(data, str):
        try:
            data = base64.b64decode(data.partition(",")[2] if data.startswith("data:")
                                    else data, validate=True)
        except (binascii.Error, ValueError):
            raise BadUpstreamResponse(f"{label} sent an image that is not base64.",
                                      retryable=False) from None
    if not data[:8].startswith(IMAGE_MAGIC):
        raise BadUpstreamResponse(f"{label} sent something that is not an image.",
                                  retryable=False)
    return data


def _interpret(w: Endpoint, path: str, status: int, headers: Mapping[str, str],
               raw: bytes) -> Any:
    """One answer as JSON, or the error it means, in words for the operator."""
    try:
        payload = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        payload = None
        if 200 <= status < 300:
            raise BadUpstreamResponse(f"{w.label}'s answer to {path} is not JSON "
                                      f"(HTTP {status}, {len(raw)} bytes).") from None
    said = _message(payload)
    quoted = f": {said}" if said else "."
    if 300 <= status < 400:
        raise UpstreamRejected(f"{w.label} redirected {path} elsewhere (HTTP {status}); "
                               f"set `base_url` of provider `{w.name}` to where it serves.")
    if status in (401, 403):
        raise UpstreamAuthError(f"{w.label} refused the credentials (HTTP {status}){quoted} "
                                f"{w.advice[0].upper()}{w.advice[1:]}, then restart the daemon.")
    if status == 404:
        hint = " (start the WebUI with --api)" if w.kind == "a1111" else ""
        raise UpstreamRejected(f"{w.label} has no {path} (HTTP 404){hint}; check `base_url` "
                               f"of provider `{w.name}`.")
    if status >= 400 and _code(payload) in CONTENT_CODES:
        raise ContentRefused(f"{w.label} refused the content{quoted}")
    if status == 429:
        raise UpstreamRateLimited(f"{w.label} is rate-limiting (HTTP 429){quoted}",
                                  retry_after=retry_after(headers.get("Retry-After")))
    if status == 504:
        raise UpstreamTimeout(f"{w.label} timed out (HTTP 504){quoted}")
    if status >= 500:
        raise UpstreamServerError(f"{w.label} failed (HTTP {status}){quoted}")
    if status >= 400:
        raise UpstreamInvalid(f"{w.label} found the request invalid (HTTP {status}){quoted}")
    if status != 200 and status != 201:
        raise BadUpstreamResponse(f"{w.label} answered {path} with HTTP {status}.")
    return payload


def _message(payload: Any) -> str:
    """The provider's own words (FastAPI's ``detail``, OpenAI's ``error.message`` …),
    shortened and with any secret masked: errors reach clients and logs."""
    if not isinstance(payload, dict):
        return ""
    said, detail = payload.get("error"), payload.get("detail")
    if isinstance(said, dict):
        said = said.get("message")
    elif isinstance(said, str) and isinstance(detail, str) and detail:
        said = f"{said}: {detail}"                  # A1111: the exception's class, then text
    if not isinstance(said, str) or not said:
        said = detail or payload.get("message") or payload.get("description") or said
    if isinstance(said, list) and said and isinstance(said[0], dict):   # FastAPI's 422
        first = said[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        said = f"{where}: {first.get('msg')}" if where else first.get("msg")
    return logs.redact(str(said).strip())[:300] if said else ""


def _code(payload: Any) -> str | None:
    error = payload.get("error") if isinstance(payload, dict) else None
    return error.get("code") if isinstance(error, dict) else None


# --- providers over plain HTTP, and those that answer in one call ---------------------

class RemoteProvider(Provider):
    """What every provider over plain HTTP keeps (all but Arting): its entry's basics,
    its request funnel, the store."""

    def __init__(self, cfg: ProviderConfig, api: RemoteAPI, store: ImageStore) -> None:
        self.name, self.label, self.kind = cfg.name, cfg.title, cfg.kind
        self.free_to_repeat = cfg.free_to_repeat
        self.img2img = cfg.takes_img2img
        self.default_model = cfg.default_model
        self.api = api
        self.store = store

    def health(self) -> dict[str, Any]:
        w = self.api.where
        # every header but Accept carries credentials (Authorization, mj-api-secret)
        return {"base_url": w.base_url,
                "credentials": "set" if set(w.headers) - {"Accept"} else "none"}


class RemoteAttempt(Attempt):
    """An attempt at one job at such a provider: what it works with."""

    def __init__(self, provider: RemoteProvider, work: Work) -> None:
        self.provider = provider
        self.work = work
        self.state = work.provider_state


class SyncProvider(RemoteProvider):
    """The images come back from one call: ``generate``."""

    @abstractmethod
    async def generate(self, work: Work, progress: OnProgress) -> list[bytes]:
        """Make the job's images in one call (and report progress while it runs)."""

    @abstractmethod
    async def catalogue(self) -> dict[str, str]:
        """The models the upstream offers: its ids → names to show."""

    async def interrupt(self) -> None:
        """Ask the upstream to stop the call in flight; by default there is no way to."""

    def require(self, feature: str) -> None:
        if feature == "img2img" and self.img2img:
            return
        if feature == "img2img":
            raise FeatureDisabled(
                f"{self.label} does no image-to-image here; if it has it, set "
                f"`img2img = true` for provider `{self.name}` in arting.toml.", param="image")
        raise FeatureDisabled(f"{self.label} does no {feature}.")

    def submitted(self, work: Work) -> bool:
        return False

    def attempt(self, work: Work, deadline: float) -> SyncAttempt:
        return SyncAttempt(self, work)

    async def fetch(self, work: Work, output: str) -> bytes:
        return await self.store.read(output.removeprefix(STORED))

    async def probe(self) -> dict[str, Any]:
        return {"models": len(await self.catalogue())}


class SyncAttempt(RemoteAttempt):
    provider: SyncProvider

    async def submit(self) -> float:
        return time.time()      # nothing goes ahead of the call: ``follow`` makes it

    async def follow(self, progress: OnProgress) -> list[str]:
        p = self.provider
        try:
            images = await p.generate(self.work, progress)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await wait_for(p.interrupt(), INTERRUPT_WAIT)
            raise
        if not images:
            raise BadUpstreamResponse(f"{p.label} answered with no images.", retryable=False)
        stored = [await p.store.put(image) for image in images]
        return [STORED + s.hash for s in stored]
