"""Exchanges with Arting as the client saw them, and the record directory they go to.

The Arting client calls an ``observe`` hook with one ``Exchange`` per HTTP request it
makes (``watch``). ``arting-daemon check --record DIR`` collects them and writes them
here, redacted: no token, cookie or identity reaches the files, so a user can attach
the directory to a bug report, and ``--sandbox --replay DIR`` turns it back into an
emulator that answers the same way (``sandbox/replay.py`` reads what this writes).

Layout::

    DIR/record.json           what was checked, the findings, the exchanges in order
    DIR/exchanges/001-get.json one exchange: request, answer, timing, what it meant
    DIR/exchanges/007-image.png a binary body (an image), next to its exchange
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import logs

RECORD_FILE = "record.json"
FORMAT = "arting-2api check record"
FORMAT_VERSION = 1

#: Set-Cookie and Cookie values, Authorization and the like are never written as sent.
_SECRET_HEADERS = {"authorization", "cookie", "set-cookie", "proxy-authorization"}
_IP_LIKE = re.compile(r"[0-9A-Fa-f:.]{3,}")
_IMAGE_TYPES = {b"\x89PNG": "png", b"\xff\xd8\xff": "jpg", b"RIFF": "webp", b"GIF8": "gif"}


@dataclass
class Exchange:
    """One HTTP request to Arting (or its image host) and what came back."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: Any                       # JSON (dict), bytes (an upload) or None
    started: float                          # time.time() when it was sent
    via: str = "aiohttp"    # the daemon's own client (records keep that name), or "cloudscraper"
    elapsed: float = 0.0
    status: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: bytes = b""
    error: str | None = None                # why there is no (usable) answer
    #: Set by whoever made the request: which step it belonged to and what it meant
    #: (``accepted``, ``refused``, ``pending``, ``done``, ``missing`` ...).
    step: str = ""
    outcome: str = ""

    def answer(self, status: int, headers, body: bytes) -> None:
        self.status = status
        self.response_headers = [(str(k), str(v)) for k, v in headers.items()]
        self.response_body = body

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    def header(self, name: str) -> str:
        wanted = name.lower()
        return next((v for k, v in self.response_headers if k.lower() == wanted), "")

    def json(self) -> Any:
        """The answer as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.response_body)
        except ValueError:
            return None


Observer = Callable[[Exchange], None]


class _Unwatched:
    """Stands in for an exchange nobody observes (the daemon's own): costs nothing, and
    keeps nothing."""

    def answer(self, status: int, headers, body: bytes) -> None:
        pass

    @property
    def response_body(self) -> bytes:
        return b""

    @response_body.setter
    def response_body(self, value: bytes) -> None:
        pass


_UNWATCHED = contextlib.nullcontext(_Unwatched())


def watch(observe: Observer | None, method: str, url: str, headers: dict[str, str],
          body: Any, via: str = "aiohttp"):
    """Around one request: the caller fills in the answer; ``observe`` gets the exchange
    when the request is over, whether it was answered or failed."""
    if observe is None:
        return _UNWATCHED
    return _watching(observe, method, url, headers, body, via)


@contextlib.contextmanager
def _watching(observe: Observer, method: str, url: str, headers: dict[str, str],
              body: Any, via: str) -> Iterator[Exchange]:
    seen = Exchange(method, url, dict(headers), body, time.time(), via=via)
    try:
        yield seen
    except BaseException as exc:
        seen.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        seen.elapsed = time.time() - seen.started
        observe(seen)


class Recorder:
    """Collects the exchanges of a run, each named after the step it belongs to."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self.started = time.time()
        self._step, self._made = "", [self.exchanges]

    def __call__(self, exchange: Exchange) -> None:
        exchange.step = self._step
        for made in self._made:
            made.append(exchange)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[list[Exchange]]:
        """Exchanges made inside are named ``name`` and also collected in the list
        this yields, as they happen."""
        made: list[Exchange] = []
        before = self._step
        self._step, self._made = name, [*self._made, made]
        try:
            yield made
        finally:
            self._step, self._made = before, [m for m in self._made if m is not made]


class Redactor:
    """Replaces every secret by a placeholder that says what it was (``<token-2>``)."""

    def __init__(self, named: dict[str, str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self.named = sorted(((s, p) for s, p in named.items() if s and len(s) >= 4),
                            key=lambda item: len(item[0]), reverse=True)

    def text(self, text: str) -> str:
        for secret, placeholder in self.named:
            text = text.replace(secret, placeholder)
        return logs.redact(text)      # and anything else the process knows is secret

    def data(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value

    def binary(self, data: bytes) -> bytes:
        for secret, placeholder in self.named:
            data = data.replace(secret.encode(), placeholder.encode())
        return data

    def headers(self, pairs) -> list[list[str]]:
        out = []
        for name, value in pairs:
            lowered = name.lower()
            if lowered == "authorization":
                shown = self._label(value) or "<redacted>"
            elif lowered in ("cookie", "set-cookie"):
                shown = _cookie_names(value, lowered == "set-cookie")
            elif lowered in _SECRET_HEADERS:
                shown = "<redacted>"
            else:
                shown = self.text(value)
            out.append([name, shown])
        return out

    def _label(self, value: str) -> str | None:
        return next((p for s, p in self.named if s == value.strip()), None)


def _cookie_names(value: str, set_cookie: bool) -> str:
    """Cookie names only: ``cf_clearance=<redacted>; Path=/`` (attributes kept)."""
    if set_cookie:
        first, _, attributes = value.partition(";")
        name = first.partition("=")[0].strip()
        return f"{name}=<redacted>" + (f";{attributes}" if attributes else "")
    names = [part.partition("=")[0].strip() for part in value.split(";") if part.strip()]
    return "; ".join(f"{n}=<redacted>" for n in names)


def _mask_addresses(text: str) -> str:
    """IP addresses (v4 and v6) in an HTML page: Cloudflare's pages show the caller's."""
    def mask(match: re.Match) -> str:
        candidate = match[0].strip(":.")
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            return match[0]
        return match[0].replace(candidate, "<ip-address>")
    return _IP_LIKE.sub(mask, text)


def write_record(directory: Path, exchanges: list[Exchange], started: float,
                 summary: dict, redactor: Redactor) -> Path:
    """Write ``exchanges`` (and ``summary``: what was checked and found) under
    ``directory``, redacted. Returns the index file."""
    folder = directory / "exchanges"
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for seq, exchange in enumerate(exchanges, 1):
        stem = f"{seq:03d}-{exchange.step or 'run'}-{_route_name(exchange)}"
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem)
        doc = {
            "seq": seq, "step": exchange.step, "outcome": exchange.outcome,
            "via": exchange.via, "method": exchange.method,
            "url": redactor.text(exchange.url),
            "at": round(exchange.started - started, 3), "elapsed": round(exchange.elapsed, 3),
            "request": {"headers": redactor.headers(exchange.request_headers.items()),
                        **_body(exchange.request_body, folder, f"{stem}-request", redactor)},
            "response": None if exchange.status is None else {
                "status": exchange.status,
                "headers": redactor.headers(exchange.response_headers),
                **_body(exchange.response_body, folder, f"{stem}-response", redactor,
                        html="html" in exchange.header("Content-Type").lower())},
            "error": redactor.text(exchange.error) if exchange.error else None,
        }
        (folder / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
        names.append(f"exchanges/{stem}.json")
    index = directory / RECORD_FILE
    index.write_text(json.dumps({
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        **redactor.data(summary), "exchanges": names}, indent=1) + "\n")
    return index


def _route_name(exchange: Exchange) -> str:
    path = exchange.path.rstrip("/")
    if "/image-to-image/" in path:
        return "i2i_" + path.rsplit("/", 1)[-1]
    if exchange.method == "GET":
        return "image"
    return path.rsplit("/", 1)[-1] or "root"


def _body(body: Any, folder: Path, stem: str, redactor: Redactor,
          html: bool = False) -> dict:
    """A body as JSON, text, or a file beside the exchange (images, uploads)."""
    if body is None or body == b"":
        return {"body": None}
    if isinstance(body, (dict, list)):
        return {"json": redactor.data(body)}
    if isinstance(body, bytes):
        try:
            return {"json": redactor.data(json.loads(body))}
        except ValueError:
            pass
        kind = next((ext for magic, ext in _IMAGE_TYPES.items() if body.startswith(magic)),
                    None)
        if kind is None:
            try:
                text = redactor.text(body.decode("utf-8"))
            except UnicodeDecodeError:
                kind = "bin"
            else:
                return {"text": _mask_addresses(text) if html else text}
        name = f"{stem}.{kind}"
        data = redactor.binary(body)
        (folder / name).write_bytes(data)
        return {"file": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return {"text": redactor.text(str(body))}


# --- reading a record back -------------------------------------------------------------------

class RecordError(ValueError):
    """The directory is not a readable check record; the message says why."""


@dataclass
class RecordedExchange:
    """One exchange as read back from a record directory."""

    step: str
    outcome: str
    via: str
    method: str
    url: str
    at: float
    elapsed: float
    request: dict
    status: int | None
    headers: list[list[str]]
    body: Any                   # JSON, text, or None
    file: Path | None           # a binary answer (an image)

    @property
    def path(self) -> str:
        return urlsplit(self.url).path


def read_record(directory: Path) -> tuple[dict, list[RecordedExchange]]:
    """The record's index and its exchanges, in the order they happened."""
    index_path = directory / RECORD_FILE
    try:
        index = json.loads(index_path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{directory} is not a check record: it has no {RECORD_FILE} "
                          "(make one with `arting-daemon check --record DIR`).") from None
    except (OSError, ValueError) as exc:
        raise RecordError(f"{index_path} cannot be read: {exc}.") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise RecordError(f"{index_path} is not a check record (no \"format\": \"{FORMAT}\").")
    exchanges = []
    for name in index.get("exchanges", []):
        path = directory / name
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RecordError(f"{path} cannot be read: {exc}.") from None
        response = doc.get("response") or {}
        body = response.get("json", response.get("text"))
        file = response.get("file")
        exchanges.append(RecordedExchange(
            step=doc.get("step", ""), outcome=doc.get("outcome", ""),
            via=doc.get("via", "aiohttp"), method=doc.get("method", "POST"),
            url=doc.get("url", ""), at=float(doc.get("at", 0.0)),
            elapsed=float(doc.get("elapsed", 0.0)),
            request=(doc.get("request") or {}).get("json") or {},
            status=response.get("status"), headers=response.get("headers", []),
            body=body, file=path.parent / file if file else None))
    return index, exchanges
