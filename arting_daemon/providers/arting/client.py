"""Arting's protocol, exactly as public clients speak it (``arting_protocol.md`` §2–§3).

* ``POST {base}/api/cg/text-to-image/create`` with the generation as JSON → ``data.request_id``
* ``POST {base}/api/cg/text-to-image/get`` with ``{"request_id"}`` → ``data.output`` URLs
* the image-to-image pair under ``/api/cg/image-to-image/`` (unconfirmed; behind a switch)
* result images are fetched with a plain GET, only from hosts we trust.

Every exchange goes through one funnel (``_call``) that sends the bare
``Authorization`` token and browser-like headers (with the Cloudflare clearance, if
any), passes a Cloudflare challenge once if cloudscraper can, and turns every way
Arting (or Cloudflare in front of it) can fail into one of the errors in
``errors.py``, counted in the metrics by route and class.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from pydantic import SecretStr

from ... import logs
from ...config import Section
from ...errors import (ArtingError, BadUpstreamResponse, CloudflareBlocked, ContentRefused,
                      JobFailed, UpstreamAuthError, UpstreamRateLimited, UpstreamRejected,
                      UpstreamServerError, UpstreamTimeout, UpstreamUnavailable,
                      UpstreamUnreachable)
from ...generation import Generation
from ...metrics import Metrics
from . import cloudflare

log = logging.getLogger(__name__)

SUCCESS = 100000
MAX_IMAGE_BYTES = 50 * 1024 * 1024
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF", b"GIF8")

TXT2IMG = "/api/cg/text-to-image"
IMG2IMG = "/api/cg/image-to-image"
UPLOAD = "/api/upload"
#: A request id no job has: polling it shows whether a token (and the clearance) gets in.
PROBE_REQUEST_ID = "arting-2api-probe"

# Arting publishes no error codes; these words in a message say what kind of refusal it is.
_AUTH_WORDS = ("token", "auth", "login", "unauthor", "expired", "credential", "sign in")
_RATE_WORDS = ("too many", "rate limit", "frequent", "credit", "quota", "limit reached")
_CONTENT_WORDS = ("nsfw", "content not allowed", "sensitive", "inappropriate", "prohibited")


@dataclass(frozen=True)
class Upstream(Section):
    """How to reach Arting and read its answers."""

    base_url: str
    user_agent: str
    origin: str
    referer: str
    cf_clearance: SecretStr | None
    cf_solver: bool
    image_hosts: list[str]
    request_timeout: float
    failed_statuses: list[str]
    done_statuses: list[str]


@dataclass(frozen=True)
class PollResult:
    status: str | None
    urls: list[str]

    @property
    def done(self) -> bool:
        return bool(self.urls)


class ArtingClient:
    """One aiohttp session, one request funnel, typed errors out."""

    def __init__(self, upstream: Upstream, session: aiohttp.ClientSession,
                 metrics: Metrics | None = None) -> None:
        self.upstream = upstream
        self.session = session
        self.metrics = metrics or Metrics()
        cookie = upstream.cf_clearance.get_secret_value() if upstream.cf_clearance else None
        self.solver = cloudflare.Solver(upstream.user_agent, cookie, upstream.cf_solver,
                                        upstream.request_timeout, self.metrics)
        self.base = upstream.base_url
        #: The newest request id Arting gave us: the best thing to poll as a probe.
        self.last_request_id: str | None = None
        self._failed = {s.lower() for s in upstream.failed_statuses}
        self._done = {s.lower() for s in upstream.done_statuses}
        self._allowed_hosts = [h.lower() for h in upstream.image_hosts]
        self._allowed_hosts.append(urlsplit(self.base).hostname or "")
        t = upstream.request_timeout
        self._timeout = aiohttp.ClientTimeout(total=t, sock_connect=min(t, 10.0))

    # --- the protocol -------------------------------------------------------------------

    def create_body(self, gen: Generation, image_url: str | None = None) -> dict:
        """The create body, field for field as the public clients send it."""
        body = {
            "prompt": gen.prompt,
            "model_id": gen.model,
            "samples": gen.n,
            "height": gen.height,
            "width": gen.width,
            "negative_prompt": gen.negative_prompt,
            "seed": gen.seed,
            "lora_ids": ",".join(lo.id for lo in gen.loras),
            "lora_weight": ",".join(_num(lo.weight) for lo in gen.loras) or "0.7",
            "sampler": gen.sampler,
            "steps": gen.steps,
            "guidance": gen.guidance,
            "clip_skip": gen.clip_skip,
            "is_nsfw": gen.nsfw,
        }
        if image_url is not None:
            body["image_url"] = image_url
            body["strength"] = gen.strength
        return body

    async def create(self, gen: Generation, token: str | None,
                     image_url: str | None = None) -> str:
        """Submit the job; returns Arting's ``request_id``."""
        path = (IMG2IMG if gen.is_img2img else TXT2IMG) + "/create"
        data = await self._call(path, self.create_body(gen, image_url), token)
        request_id = data.get("request_id") if isinstance(data, dict) else None
        if not isinstance(request_id, (str, int)) or request_id == "":
            raise BadUpstreamResponse("Arting accepted the job but sent no request_id.")
        self.last_request_id = str(request_id)
        return self.last_request_id

    async def poll(self, request_id: str, token: str | None, img2img: bool = False) -> PollResult:
        """One look at the job. Raises ``JobFailed`` as soon as Arting says it failed."""
        path = (IMG2IMG if img2img else TXT2IMG) + "/get"
        data = await self._call(path, {"request_id": request_id}, token)
        if not isinstance(data, dict):
            raise BadUpstreamResponse("Arting's poll answer has no data object.")
        status = data.get("status")
        status_text = str(status).lower() if status is not None else None
        if status_text in self._failed:
            reason = data.get("message") or data.get("error") or "no reason given"
            raise JobFailed(f"Arting reported the generation failed ({reason}).")
        output = data.get("output") or []
        if not isinstance(output, list):
            raise BadUpstreamResponse("Arting's `output` is not a list.")
        urls = [u for u in output if isinstance(u, str) and u.startswith(("http://", "https://",
                                                                          "data:image/"))]
        if output and len(urls) != len(output):
            urls = []  # some entries are not URLs yet: keep polling, as careful clients do
        elif not output and status_text in self._done:
            raise JobFailed("Arting reported the job finished but returned no images.")
        return PollResult(status=status_text, urls=urls)

    async def check_token(self, token: str | None) -> None:
        """Prove Arting lets ``token`` in, without making a job: poll the newest request id
        we know (or one no job has). Arting's envelope — the job, or a refusal of the id
        such as "task not found" — proves it; an auth refusal, a rate limit or a
        Cloudflare page is raised."""
        try:
            await self._call(TXT2IMG + "/get",
                             {"request_id": self.last_request_id or PROBE_REQUEST_ID}, token,
                             route="probe")
        except UpstreamRejected:
            pass

    async def upload(self, image: bytes, token: str | None) -> str:
        """Upload an init image (unconfirmed endpoint); returns the URL Arting gives back."""
        data = await self._call(UPLOAD, image, token, envelope=False)
        url = data.get("url") if isinstance(data, dict) else None
        if not url and isinstance(data, dict) and isinstance(data.get("data"), dict):
            url = data["data"].get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise BadUpstreamResponse("Arting's upload answer has no image URL.")
        return url

    async def download(self, url: str) -> bytes:
        """Fetch one result image: a plain GET, only from a trusted host, size-bounded."""
        try:
            return await self._download(url)
        except ArtingError as exc:
            self.metrics.upstream_error("download", exc)
            raise

    async def _download(self, url: str) -> bytes:
        """A fault of the image host is retryable (``UpstreamUnavailable``, a timeout); an
        image that is gone, too big or not an image is not (``_unusable``)."""
        if url.startswith("data:image/"):
            try:
                return base64.b64decode(url.partition(",")[2], validate=True)
            except (binascii.Error, ValueError):
                raise _unusable("Arting returned a malformed data: image.") from None
        host = (urlsplit(url).hostname or "").lower()
        if not self.host_allowed(host):
            raise _unusable(
                f"Arting returned an image on host {host!r}, which is not in `image_hosts`; "
                "add it there if you trust it.")
        try:
            async with self.session.get(url, timeout=self._timeout) as resp:
                if resp.status in (403, 404, 410):
                    raise _unusable(
                        f"The result image is gone (HTTP {resp.status}); its URL expired.")
                if resp.status >= 500 or resp.status == 429:
                    raise UpstreamUnavailable(f"The image host answered HTTP {resp.status}.")
                if resp.status != 200:
                    raise _unusable(f"The image host answered HTTP {resp.status}.")
                chunks, size = [], 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_IMAGE_BYTES:
                        raise _unusable("The result image is larger than 50 MiB.")
        except ArtingError:
            raise
        except asyncio.TimeoutError:
            raise UpstreamTimeout("Downloading the result image timed out.") from None
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"Downloading the result image failed: "
                                      f"{type(exc).__name__}.") from None
        data = b"".join(chunks)  # the one copy of the image
        if not data[:8].startswith(IMAGE_MAGIC):
            raise _unusable("The result URL did not return an image.")
        return data

    def host_allowed(self, host: str) -> bool:
        for pattern in self._allowed_hosts:
            if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
                return True
        return False

    # --- the funnel ---------------------------------------------------------------------

    def _headers(self, token: str | None, json_body: bool) -> dict[str, str]:
        headers = {
            "Accept": "application/json, text/plain, */*",
            "Origin": self.upstream.origin,
            "Referer": self.upstream.referer,
            "User-Agent": self.solver.clearance.user_agent,
        }
        if json_body:
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = token  # bare: Arting's clients never add "Bearer "
        cookies = self.solver.clearance.cookie_header()
        if cookies:
            headers["Cookie"] = cookies
        return headers

    async def _call(self, path: str, body: dict | bytes, token: str | None,
                    *, envelope: bool = True, route: str | None = None) -> object:
        """POST to Arting and return the envelope's ``data`` (or the whole JSON).

        ``body`` is JSON, or the bytes of an image to upload. A Cloudflare challenge is
        answered by the solver, then the request is sent once more: a challenge page
        comes from Cloudflare, so Arting never saw the first one (no job was made)."""
        try:
            try:
                return await self._exchange(path, body, token, envelope)
            except CloudflareBlocked as exc:
                if exc.kind != "challenge":
                    raise
                seen = self.solver.clearance
                await self.solver.solve(self.base + TXT2IMG + "/get",
                                        _solver_headers(self._headers(token, True)),
                                        {"request_id": PROBE_REQUEST_ID}, seen)
            try:
                return await self._exchange(path, body, token, envelope)
            except CloudflareBlocked as exc:
                raise (self.solver.refused() if exc.kind == "challenge" else exc) from None
        except ArtingError as exc:
            self.metrics.upstream_error(route or path.rsplit("/", 1)[-1], exc)
            raise

    async def _exchange(self, path: str, body: dict | bytes, token: str | None,
                        envelope: bool) -> object:
        """One HTTP exchange, its failures as typed errors."""
        is_json = isinstance(body, dict)
        if is_json:
            data: str | aiohttp.FormData = json.dumps(body)
        else:
            data = aiohttp.FormData()
            data.add_field("image", body, filename="init.png", content_type="image/png")
        try:
            async with self.session.post(
                    self.base + path, headers=self._headers(token, is_json), data=data,
                    timeout=self._timeout) as resp:
                raw = await resp.read()
                status, headers = resp.status, resp.headers
        except asyncio.TimeoutError:
            raise UpstreamTimeout(f"Arting did not answer {path} within "
                                  f"{self.upstream.request_timeout:g} s.") from None
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamUnreachable(f"Arting could not be reached ({type(exc).__name__}); "
                                      "check the network and `base_url`.") from None
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"The connection to Arting broke during {path} "
                                      f"({type(exc).__name__}).") from None
        return _interpret(path, status, headers, raw, envelope)


def _unusable(message: str) -> BadUpstreamResponse:
    """An answer about a result image that asking again will not change."""
    return BadUpstreamResponse(message, retryable=False)


def _solver_headers(headers: dict[str, str]) -> dict[str, str]:
    """Our headers minus what cloudscraper must choose itself (its User-Agent, its cookies)."""
    return {k: v for k, v in headers.items() if k not in ("User-Agent", "Cookie")}


def _interpret(path: str, status: int, headers, raw: bytes, envelope: bool) -> object:
    """Turn one HTTP answer into data or a typed error."""
    text = raw.decode("utf-8", "replace")
    content_type = headers.get("Content-Type", "").lower()
    if "html" in content_type or text.lstrip()[:1] == "<":
        kind = cloudflare.classify(status, headers, text)
        if kind == "rate_limit":
            raise UpstreamRateLimited(cloudflare.ADVICE[kind],
                                      retry_after=_retry_after(headers))
        if kind == "origin_error":
            never_reached = status in cloudflare.ORIGIN_NEVER_REACHED
            raise (UpstreamUnreachable if never_reached else UpstreamUnavailable)(
                cloudflare.ADVICE[kind])
        if kind is not None:
            raise CloudflareBlocked(cloudflare.ADVICE[kind], kind=kind)
    if status == 429:
        raise UpstreamRateLimited("Arting is rate-limiting this token (HTTP 429).",
                                  retry_after=_retry_after(headers))
    try:
        payload = json.loads(text) if text.strip() else None
    except ValueError:
        payload = None
        if status < 400:
            raise BadUpstreamResponse(f"Arting's answer to {path} is not valid JSON "
                                      f"(HTTP {status}, {len(raw)} bytes).") from None
    if status >= 400:
        message = _message(payload)
        if status in (401, 403):
            raise UpstreamAuthError(_auth_advice(message or f"HTTP {status}"))
        if status >= 500:
            raise UpstreamServerError(f"Arting answered HTTP {status}"
                                      + (f": {message}" if message else "."))
        if isinstance(payload, dict) and "code" in payload:
            _check_envelope(payload)
        raise UpstreamRejected(f"Arting refused the request (HTTP {status})"
                               + (f": {message}" if message else "."))
    if not isinstance(payload, dict):
        raise BadUpstreamResponse(f"Arting's answer to {path} is not a JSON object.")
    if not envelope:
        return payload
    _check_envelope(payload)
    return payload.get("data")


def _check_envelope(payload: dict) -> None:
    """``code == 100000`` is success; anything else fails now, never after a timeout."""
    code = payload.get("code")
    if code == SUCCESS or code == str(SUCCESS):
        return
    message = _message(payload) or "no message"
    lowered = message.lower()
    try:
        code_num = int(code)
    except (TypeError, ValueError):
        code_num = None
    if any(w in lowered for w in _AUTH_WORDS) or code_num in (100401, 100402, 100403):
        raise UpstreamAuthError(_auth_advice(message))
    if any(w in lowered for w in _RATE_WORDS) or code_num == 100429:
        raise UpstreamRateLimited(f"Arting is limiting this token: {message}.")
    if any(w in lowered for w in _CONTENT_WORDS):
        raise ContentRefused(f"Arting refused the content: {message}.", upstream_code=code_num)
    raise UpstreamRejected(f"Arting refused the request: {message} (code {code}).",
                           upstream_code=code_num)


def _message(payload: object) -> str:
    """Arting's own words, as they go into our errors: shortened, and with any secret it
    echoed back (a token, a cookie) masked, since errors reach clients and logs."""
    if isinstance(payload, dict):
        msg = payload.get("message") or payload.get("msg") or payload.get("error")
        if isinstance(msg, str):
            return logs.redact(msg.strip())[:300]
    return ""


def _auth_advice(message: str) -> str:
    return (f"Arting refused the token ({message}). Copy a fresh `Authorization` value from "
            "a browser session on arting.ai (F12 → Network) into ARTING_AUTH_TOKEN or "
            "`auth_tokens`, then restart the daemon.")


def _retry_after(headers) -> float | None:
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _num(x: float) -> str:
    """0.7 → '0.7', 1.0 → '1' (the way JavaScript clients print weights)."""
    return f"{x:g}"
