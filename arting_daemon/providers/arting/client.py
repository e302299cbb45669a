"""Arting's protocol, exactly as public clients speak it (``docs/protocol/arting.md`` §2–§3).

* ``POST {base}/api/cg/text-to-image/create`` with the generation as JSON → ``data.request_id``
* ``POST {base}/api/cg/text-to-image/get`` with ``{"request_id"}`` → ``data.output`` URLs
  (and, §11, the identity's ``remain_balance``)
* the image-to-image pair under ``/api/cg/image-to-image/`` (unconfirmed; behind a switch)
* an image Arting should read is uploaded the signed-URL way (§11):
  ``POST {base}/api/cg/get_oss_signed_urls`` → a ``put``/``get`` URL pair, a ``PUT`` of the
  bytes to ``put`` (no token), and ``get`` is what later calls take as ``image_url``
* upscaling (§11): ``POST {base}/api/image/image-enhance/create-task`` → ``data.task_id``,
  ``GET …/get-task-result?task_id=`` → an integer ``data.status`` and, when done,
  ``data.task_result.file_oss_path``
* result images are fetched with a plain GET; they and the signed PUT go only where
  the outbound policy (``outbound.py``) allows.

Every exchange goes through one funnel (``_call``) that sends the bare
``Authorization`` token and browser-like headers (with the Cloudflare clearance, if
any), passes a Cloudflare challenge once if it can (the browser-like client, then
cloudscraper), and turns every way Arting (or Cloudflare in front of it, or a proxy on
the way) can fail into one of the errors in ``errors.py``, counted in the metrics by
route and class. Which client carries each request is the ``Director``'s choice
(``transport/director.py``). An ``observe`` hook, when
given, sees every exchange as it was sent and answered (``arting-daemon check``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from dataclasses import dataclass
from typing import Annotated, TypeVar
from urllib.parse import quote, urlencode, urljoin, urlsplit

from pydantic import (BaseModel, BeforeValidator, Field, SecretStr, StringConstraints,
                      ValidationError)

from ... import logs
from ...config import Section
from ...errors import (ArtingError, BadUpstreamResponse, CloudflareBlocked, ContentRefused,
                      JobFailed, UpstreamAuthError, UpstreamRateLimited, UpstreamRejected,
                      UpstreamServerError, UpstreamTimeout, UpstreamUnavailable,
                      UpstreamUnreachable)
from ...generation import Generation
from ...metrics import Metrics
from ...outbound import OutboundPolicy
from ...recording import Observer, watch
from ...retry import retry_after
from ...transport.director import Director
from ...transport.proxies import ProxyPlan
from ...transport.tunnel import ProxyFailure
from . import cloudflare, wire

log = logging.getLogger(__name__)

SUCCESS = 100000
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_REDIRECTS = 5
MAX_STORAGE_ANSWER = 64 * 1024      # an object store's answer to a PUT: a short XML error
URL_SAFE = "!#$%&'()*+,/:;=?@[]~"   # what a URL's path and query keep as it is
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF", b"GIF8")

TXT2IMG = "/api/cg/text-to-image"
IMG2IMG = "/api/cg/image-to-image"
SIGNED_URLS = "/api/cg/get_oss_signed_urls"
ENHANCE = "/api/image/image-enhance"
#: A request id no job has: polling it shows whether a token (and the clearance) gets in.
PROBE_REQUEST_ID = "arting-2api-probe"

# Arting publishes no error codes; these words in a message say what kind of refusal it is.
_AUTH_WORDS = ("token", "auth", "login", "unauthor", "expired", "credential", "sign in")
_RATE_WORDS = ("too many", "rate limit", "frequent", "credit", "quota", "limit reached",
               "balance")
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
    impersonate: str
    image_hosts: list[str]
    request_timeout: float
    failed_statuses: list[str]
    done_statuses: list[str]
    upscale_version: str
    upscale_done_statuses: list[int]
    upscale_failed_statuses: list[int]


# --- Arting's answers (the envelope's ``data``), read into models at the edge -------------

#: An id as Arting sends it: a non-empty string, or a number (kept as its text).
UpstreamId = Annotated[str, BeforeValidator(lambda v: str(v) if type(v) is int else v),
                       StringConstraints(min_length=1)]
HttpUrl = Annotated[str, StringConstraints(pattern=r"^https?://")]
M = TypeVar("M", bound=BaseModel)


class Created(BaseModel):
    """A create's answer: the job's id, to poll."""

    request_id: UpstreamId


class EnhanceTask(BaseModel):
    """An image-enhance create's answer: the task's id, to poll."""

    task_id: UpstreamId


class SignedUrl(BaseModel):
    """Where to ``put`` an upload, and the URL it is read from (``get``) afterwards."""

    put: HttpUrl
    get: HttpUrl


class SignedUrls(BaseModel):
    oss_signed_urls: list[SignedUrl] = Field(min_length=1)


def _parse(model: type[M], data: object, problem: str) -> M:
    """``data`` read as ``model``, or ``BadUpstreamResponse(problem)`` when it is not one."""
    try:
        return model.model_validate(data)
    except ValidationError:
        raise BadUpstreamResponse(problem) from None


@dataclass(frozen=True)
class PollResult:
    status: str | None
    urls: list[str]
    #: The identity's ``remain_balance``, when the answer carried one.
    balance: int | None = None

    @property
    def done(self) -> bool:
        return bool(self.urls)


class ArtingClient:
    """One request funnel, typed errors out; the ``director`` carries each request (the
    light pool, through the proxy if there is one, or the browser-like client).
    ``close`` when done."""

    def __init__(self, upstream: Upstream, director: Director | None = None,
                 metrics: Metrics | None = None, observe: Observer | None = None) -> None:
        """``director``: by default, everything direct."""
        self.upstream = upstream
        self.director = director or Director(ProxyPlan.of("direct", [], {}),
                                             upstream.impersonate, upstream.base_url)
        self.metrics = metrics or Metrics()
        self.observe = observe
        self.base = upstream.base_url
        cookie = upstream.cf_clearance.get_secret_value() if upstream.cf_clearance else None
        self.solver = cloudflare.Solver(upstream.user_agent, cookie, upstream.cf_solver,
                                        upstream.request_timeout, self.metrics, observe,
                                        proxy=self.director.proxy_for(self.base))
        self.outbound = OutboundPolicy(upstream.image_hosts, self.base)
        #: A token's own Cloudflare clearance, pasted with it (token → clearance).
        self.clearances: dict[str, cloudflare.Clearance] = {}
        #: The newest request id Arting gave us: the best thing to poll as a probe.
        self.last_request_id: str | None = None
        self._failed = {s.lower() for s in upstream.failed_statuses}
        self._done = {s.lower() for s in upstream.done_statuses}
        self._upscale_done = set(upstream.upscale_done_statuses)
        self._upscale_failed = set(upstream.upscale_failed_statuses)

    def own_clearance(self, token: str, user_agent: str | None,
                      cookies: dict[str, str]) -> None:
        """The cookies and User-Agent pasted with ``token`` go with its requests (the
        cookies only with the User-Agent Cloudflare gave them to)."""
        if cookies or user_agent:
            self.clearances[token] = cloudflare.Clearance(
                user_agent or self.solver.clearance.user_agent, dict(cookies))

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
        created = _parse(Created, data, "Arting accepted the job but sent no request_id.")
        self.last_request_id = created.request_id
        return created.request_id

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
        return PollResult(status=status_text, urls=urls, balance=_balance(data))

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

    async def upload(self, png: bytes, token: str | None) -> str:
        """Put a PNG (the store holds nothing else) where Arting can read it: ask for a
        signed URL pair, PUT the bytes to ``put``, and return ``get`` (what ``image_url``
        takes)."""
        data = await self._call(SIGNED_URLS, {"f_suffixs": ["png"]}, token, route="upload_sign")
        try:
            pair = _parse(SignedUrls, data, "Arting's get_oss_signed_urls answer has no put/get "
                                            "URL pair.").oss_signed_urls[0]
        except BadUpstreamResponse as error:
            self.metrics.upstream_error("upload_sign", error)
            raise
        try:
            await self.outbound.check_signed_put(pair.put)
            await self._put(pair.put, png)
        except ArtingError as exc:
            self.metrics.upstream_error("upload_put", exc)
            raise
        return pair.get

    async def _put(self, url: str, png: bytes) -> None:
        """The presigned PUT: the bytes and their Content-Type, no token, no cookies (the
        signature is the permission), and no redirect followed."""
        host = urlsplit(url).hostname
        headers = {"Content-Type": "image/png", "User-Agent": self.solver.clearance.user_agent}
        with watch(self.observe, "PUT", url, headers, png) as seen:
            try:
                answer = await self.director.exchange("PUT", url, headers, png,
                                                      self.upstream.request_timeout,
                                                      max_bytes=MAX_STORAGE_ANSWER)
            except (TimeoutError, asyncio.TimeoutError):
                raise UpstreamTimeout(f"Uploading the image to Arting's storage at {host} "
                                      "timed out.") from None
            except ProxyFailure as exc:
                raise exc.as_error() from None
            except wire.ConnectError as exc:
                raise UpstreamUnreachable(f"Arting's storage at {host} could not be reached "
                                          f"({exc}).") from None
            except ConnectionError as exc:
                raise UpstreamUnavailable(f"Uploading the image to Arting's storage at {host} "
                                          f"failed ({exc}).") from None
            said = answer.body[:4096]
            seen.answer(answer.status, answer.headers, said)
            status, text = answer.status, said.decode("utf-8", "replace")
        if 200 <= status < 300:
            return
        shown = _storage_error(text)
        if status >= 500 or status == 429:
            raise UpstreamUnavailable(f"Arting's storage at {host} answered HTTP {status}"
                                      f"{shown}; the upload can be tried again.")
        raise UpstreamRejected(
            f"Arting's storage at {host} refused the image upload (HTTP {status}{shown}); "
            "nothing was submitted. A signed URL that expired can cause this; if it "
            "persists, Arting has changed its upload path.")

    async def enhance(self, image_url: str, scale: int, token: str | None) -> str:
        """Start an upscale of the image at ``image_url``; returns Arting's ``task_id``."""
        data = await self._call(ENHANCE + "/create-task",
                                {"image_url": image_url, "scale": scale,
                                 "version": self.upstream.upscale_version},
                                token, route="enhance_create")
        return _parse(EnhanceTask, data,
                      "Arting accepted the upscale but sent no task_id.").task_id

    async def enhance_poll(self, task_id: str, token: str | None) -> PollResult:
        """One look at an upscale. Its status is an integer: done and failed values are
        settings (``upscale_done_statuses``, ``upscale_failed_statuses``); any other value
        is pending. Raises ``JobFailed`` as soon as Arting says it failed."""
        data = await self._call(ENHANCE + "/get-task-result", None, token, method="GET",
                                params={"task_id": task_id}, route="enhance_get")
        if not isinstance(data, dict):
            raise BadUpstreamResponse("Arting's upscale answer has no data object.")
        status = data.get("status")
        try:
            code = int(status) if status is not None and not isinstance(status, bool) else None
        except (TypeError, ValueError):
            code = None
        balance = _balance(data)
        if code in self._upscale_failed:
            reason = data.get("message") or data.get("error") or "no reason given"
            raise JobFailed(f"Arting reported the upscale failed ({reason}).")
        if code not in self._upscale_done:
            return PollResult(status=None if status is None else str(status), urls=[],
                              balance=balance)
        result = data.get("task_result")
        url = result.get("file_oss_path") if isinstance(result, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise JobFailed("Arting reported the upscale finished but returned no image.")
        return PollResult(status=str(status), urls=[url], balance=balance)

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
        self.outbound.check_download(url)
        with watch(self.observe, "GET", url, {}, None) as seen:
            answer = await self._get_image(url)
            seen.answer(answer.status, answer.headers, b"")
            if answer.status in (403, 404, 410):
                raise _unusable(
                    f"The result image is gone (HTTP {answer.status}); its URL expired.")
            if answer.status >= 500 or answer.status == 429:
                raise UpstreamUnavailable(f"The image host answered HTTP {answer.status}.")
            if answer.status != 200:
                raise _unusable(f"The image host answered HTTP {answer.status}.")
            data = seen.response_body = answer.body
        if not data[:8].startswith(IMAGE_MAGIC):
            raise _unusable("The result URL did not return an image.")
        return data

    async def _get_image(self, url: str) -> wire.Response:
        """GET a result image (its URL checked already), following up to
        ``MAX_REDIRECTS`` redirects, each checked before it is followed."""
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https"):
                raise _unusable(f"The result image's URL is not http(s) ({parts.scheme}:).")
            target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                           safe=URL_SAFE)
            try:
                answer = await self.director.exchange(
                    "GET", f"{parts.scheme}://{parts.netloc}{target}",
                    {"User-Agent": self.solver.clearance.user_agent}, None,
                    self.upstream.request_timeout, max_bytes=MAX_IMAGE_BYTES)
            except (TimeoutError, asyncio.TimeoutError):
                raise UpstreamTimeout("Downloading the result image timed out.") from None
            except wire.TooLarge:
                raise _unusable("The result image is larger than 50 MiB.") from None
            except ProxyFailure as exc:
                raise exc.as_error() from None
            except ConnectionError as exc:
                raise UpstreamUnavailable(
                    f"Downloading the result image failed: {type(exc).__name__}.") from None
            location = answer.headers.get("Location")
            if answer.status not in (301, 302, 303, 307, 308) or not location:
                return answer
            url = urljoin(url, location)
            self.outbound.check_download(url)
        raise _unusable(f"The result image's URL redirected more than {MAX_REDIRECTS} times.")

    # --- the funnel ---------------------------------------------------------------------

    def _headers(self, token: str | None, json_body: bool) -> dict[str, str]:
        clearance = self.clearances.get(token or "", self.solver.clearance)
        headers = {
            "Accept": "application/json, text/plain, */*",
            "Origin": self.upstream.origin,
            "Referer": self.upstream.referer,
            "User-Agent": clearance.user_agent,
        }
        if json_body:
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = token  # bare: Arting's clients never add "Bearer "
        cookies = clearance.cookie_header()
        if cookies:
            headers["Cookie"] = cookies
        return headers

    async def _call(self, path: str, body: dict | None, token: str | None, *,
                    method: str = "POST", params: dict[str, str] | None = None,
                    route: str | None = None) -> object:
        """Send one request to Arting and return the envelope's ``data``.

        ``body`` is JSON (None for a GET). A Cloudflare challenge is answered by the
        next client that may pass it (the browser-like one, with ``impersonate = auto``),
        then by the solver, and the request is sent once more each time: a challenge page
        comes from Cloudflare, so Arting never saw the request (no job was made)."""
        try:
            try:
                return await self._exchange(method, path, body, params, token)
            except CloudflareBlocked as exc:
                if exc.kind != "challenge":
                    raise
            if self.director.escalate(token):
                try:
                    return await self._exchange(method, path, body, params, token)
                except CloudflareBlocked as exc:
                    if exc.kind != "challenge":
                        raise
            seen = self.solver.clearance
            await self.solver.solve(self.base + TXT2IMG + "/get",
                                    _solver_headers(self._headers(token, True)),
                                    {"request_id": PROBE_REQUEST_ID}, seen)
            self.director.settle(token)
            try:
                return await self._exchange(method, path, body, params, token)
            except CloudflareBlocked as exc:
                raise (self.solver.refused() if exc.kind == "challenge" else exc) from None
        except ArtingError as exc:
            self.metrics.upstream_error(route or path.rsplit("/", 1)[-1], exc)
            raise

    async def _exchange(self, method: str, path: str, body: dict | None,
                        params: dict[str, str] | None, token: str | None) -> object:
        """One HTTP exchange, its failures as typed errors."""
        data = None if body is None else json.dumps(body).encode()
        sent = self._headers(token, body is not None)
        query = f"?{urlencode(params)}" if params else ""
        with watch(self.observe, method, self.base + path + query, sent, body) as seen:
            try:
                answer = await self.director.exchange(
                    method, self.base + path + query, sent, data,
                    self.upstream.request_timeout, identity=token)
            except (TimeoutError, asyncio.TimeoutError):
                raise UpstreamTimeout(f"Arting did not answer {path} within "
                                      f"{self.upstream.request_timeout:g} s.") from None
            except ProxyFailure as exc:
                raise exc.as_error() from None
            except wire.ConnectError as exc:
                raise UpstreamUnreachable(f"Arting could not be reached ({exc}); "
                                          "check the network and `base_url`.") from None
            except ConnectionError as exc:
                raise UpstreamUnavailable(f"The connection to Arting broke during {path} "
                                          f"({exc}).") from None
            seen.answer(answer.status, answer.headers, answer.body)
            return _interpret(path, answer.status, answer.headers, answer.body)

    async def close(self) -> None:
        """Close the connections and sessions the director keeps."""
        await self.director.close()


def _unusable(message: str) -> BadUpstreamResponse:
    """An answer about a result image that asking again will not change."""
    return BadUpstreamResponse(message, retryable=False)


def _solver_headers(headers: dict[str, str]) -> dict[str, str]:
    """Our headers minus what cloudscraper must choose itself (its User-Agent, its cookies)."""
    return {k: v for k, v in headers.items() if k not in ("User-Agent", "Cookie")}


def _interpret(path: str, status: int, headers, raw: bytes) -> object:
    """Turn one HTTP answer into data or a typed error."""
    text = raw.decode("utf-8", "replace")
    content_type = headers.get("Content-Type", "").lower()
    if "html" in content_type or text.lstrip()[:1] == "<":
        kind = cloudflare.classify(status, headers, text)
        if kind == "rate_limit":
            raise UpstreamRateLimited(cloudflare.ADVICE[kind],
                                      retry_after=retry_after(headers.get("Retry-After")))
        if kind == "origin_error":
            never_reached = status in cloudflare.ORIGIN_NEVER_REACHED
            raise (UpstreamUnreachable if never_reached else UpstreamUnavailable)(
                cloudflare.ADVICE[kind])
        if kind is not None:
            raise CloudflareBlocked(cloudflare.ADVICE[kind], kind=kind)
    if status == 429:
        raise UpstreamRateLimited("Arting is rate-limiting this token (HTTP 429).",
                                  retry_after=retry_after(headers.get("Retry-After")))
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
        code_num: int | None = int(code)  # type: ignore[arg-type]
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
    return (f"Arting refused the token ({message}). Copy a fresh `Authorization` value (or "
            "the whole request as cURL) from a browser session on arting.ai (F12 → Network) "
            "and add it without a restart: POST /arting/v1/admin/tokens, `arting-daemon "
            "tokens add` or the page's Tokens panel (or put it in ARTING_AUTH_TOKEN or "
            "`auth_tokens` and restart).")



def _balance(data: dict) -> int | None:
    """``remain_balance`` as an integer, if the answer has a usable one."""
    value = data.get("remain_balance")
    if isinstance(value, bool):
        return None
    try:
        return int(float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def _storage_error(text: str) -> str:
    """``": Code: Message"`` from an OSS/S3 XML error body, shortened and redacted."""
    code = re.search(r"<Code>([^<]{1,80})</Code>", text)
    message = re.search(r"<Message>([^<]{1,300})</Message>", text)
    said = ": ".join(m[1].strip() for m in (code, message) if m)
    return f", {logs.redact(said)}" if said else ""


def _num(x: float) -> str:
    """0.7 → '0.7', 1.0 → '1' (the way JavaScript clients print weights)."""
    return f"{x:g}"
