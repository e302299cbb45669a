"""Arting's HTTP over kept-alive HTTP/1.1 connections: the light path for its exchanges.

Every job costs a create and a few polls (small JSON both ways) and a download.
aiohttp's general client spent about 170 µs of CPU on each (its request and response
objects, timers, traces, cookie and proxy handling); this path spends about 50
(bench/RESULTS.md, round four): a pool of connections per origin (the API's, each
trusted image host's), each an ``asyncio.Protocol`` with httptools' response parser
(the parser uvicorn uses), the request written as one block of bytes. What it does not
do, it does not need: cookies (the clearance is a header the client sets),
redirects (the client follows an image's itself, each hop checked by the outbound
policy). It asks for gzip or deflate, as aiohttp did (Arting and Cloudflare see the
headers they saw before), and undoes them. Through a proxy (``transport/tunnel.py``)
only the making of a connection differs: a tunnelled one costs what a direct one does.

Failures are Python's own, for the client to map: ``ConnectError`` (could not connect),
``ProxyFailure`` (the proxy could not be reached, refused the credentials or could not
reach the destination), ``TooLarge``, ``ConnectionError`` (the connection broke before a
whole answer), ``TimeoutError``. Nothing is sent twice here: whether a create that may
have reached Arting is sent again is the caller's call. A connection idle longer than
``KEEPALIVE`` is closed rather than reused, so one the server has closed meanwhile is
rarely written to.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import sys
import time
import zlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from ...clock import SYSTEM, Clock
from ...transport import tunnel
from ...transport.proxies import Proxy

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # pragma: no cover - Python 3.10
    from async_timeout import timeout as _timeout

KEEPALIVE = 15.0                   # seconds an idle connection is kept for reuse
MAX_ANSWER_BYTES = 8 * 1024 * 1024  # Arting's answers are small JSON; an HTML page at most

_measuring: ContextVar[SendTime | None] = ContextVar("measuring", default=None)


class ConnectError(ConnectionError):
    """No connection could be made (refused, unresolvable, TLS failed)."""


class TooLarge(ConnectionError):
    """The answer's body passed the request's ``max_bytes`` (the connection is closed)."""


class SendTime:
    """When the last request made under ``measuring`` left (wall time, on ``clock``): when
    it had its connection and was written. In a burst a request first waits for one of the
    pooled connections; a job's clock must start when Arting can have the create."""

    at: float = 0.0

    def __init__(self, clock: Clock = SYSTEM) -> None:
        self.clock = clock

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        self.at = self.clock.time()
        token = _measuring.set(self)
        try:
            yield
        finally:
            _measuring.reset(token)


@dataclass
class Response:
    """An HTTP response as it came: its status, headers and (undone) body."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.idle_since = time.monotonic()
        self.reusable = True
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[Response] | None = None
        self._max = MAX_ANSWER_BYTES
        self._clear()

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is its own class

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"unreadable HTTP answer ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self.transport = None
        if self._answer is not None and exc is None and self._head_done and \
                "Content-Length" not in self._headers and \
                "chunked" not in self._headers.get("Transfer-Encoding", ""):
            self.on_message_complete()      # an answer whose end is the connection's end
        self._fail(ConnectionError("the server closed the connection"))

    # --- httptools' callbacks -----------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self._head_done = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._max:
            self._fail(TooLarge(f"an answer larger than {self._max} bytes"))
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:      # an interim answer (103 Early Hints): the real one follows
            self._clear()
            return
        answer, self._answer = self._answer, None
        if answer is None or answer.done():
            return
        if not self._parser.should_keep_alive():
            self.reusable = False
        try:
            body = _decoded(self._headers.get("Content-Encoding", ""), b"".join(self._body))
        except ConnectionError as exc:
            self.reusable = False
            answer.set_exception(exc)
            return
        answer.set_result(Response(status, CIMultiDictProxy(self._headers), body))

    # --- ours ---------------------------------------------------------------------------

    def send(self, request: bytes, max_bytes: int) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._max = max_bytes
        self._clear()
        self.transport.write(request)
        return self._answer

    def _clear(self) -> None:
        """Forget the answer read so far (a new one begins)."""
        self._headers: CIMultiDict[str] = CIMultiDict()
        self._body: list[bytes] = []
        self._size = 0
        self._head_done = False

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(exc)


def _decoded(encoding: str, body: bytes) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            return zlib.decompress(body, wbits=47)   # gzip or zlib, told by the header
        except zlib.error:
            if encoding == "deflate":                # raw deflate, as some servers send
                with contextlib.suppress(zlib.error):
                    return zlib.decompress(body, wbits=-15)
            raise ConnectionError(f"an answer that says {encoding} but is not") from None
    raise ConnectionError(f"an answer in an encoding we did not ask for ({encoding})")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The system's trust, loaded once (it reads the CA files) and shared by every
    origin: an image host first seen mid-burst must not read them on the event loop."""
    return ssl.create_default_context()


class Origin:
    """Connections to one ``scheme://host:port``, at most ``limit`` at once, direct or
    through ``proxy``."""

    def __init__(self, base_url: str, limit: int = 64, proxy: Proxy | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url}")
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        default_port = 443 if self.tls else 80
        self.port = parts.port or default_port
        name = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = name if self.port == default_port else f"{name}:{self.port}"
        self.proxy = proxy
        #: An http destination through an http(s) proxy: requests name the whole URL.
        self._forward = proxy is not None and not proxy.socks and not self.tls
        self._prefix = f"http://{self._host_header}" if self._forward else ""
        self._ssl = tls_context() if self.tls else None
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(limit)
        self._closed = False

    async def request(self, method: str, target: str, headers: dict[str, str],
                      body: bytes | None, timeout: float,
                      max_bytes: int = MAX_ANSWER_BYTES) -> Response:
        """One exchange: ``target`` is the path (and query); ``Host`` and
        ``Content-Length`` are added. Raises ``ConnectError``, ``TooLarge``,
        ``ConnectionError``, ``TimeoutError``."""
        request = self._request_bytes(method, target, headers, body)
        async with self._slots:
            connection = None
            try:
                async with _timeout(timeout):
                    connection = self._idle_connection() or await self._connect(timeout)
                    stamp = _measuring.get()
                    if stamp is not None:
                        stamp.at = stamp.clock.time()
                    answer = await connection.send(request, max_bytes)
            except BaseException:
                if connection is not None:
                    connection.close()          # mid-exchange: its state is unknown
                raise
            if self._forward and answer.status == 407:    # the proxy's, not the origin's
                connection.close()
                raise tunnel.ProxyFailure(self.proxy, "refused",  # type: ignore[arg-type]
                                          "it answered HTTP 407")
            if connection.reusable and not self._closed:
                connection.idle_since = time.monotonic()
                self._idle.append(connection)
            else:
                connection.close()
            return answer

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    def _idle_connection(self) -> _Connection | None:
        """The most recently used live connection; older ones past ``KEEPALIVE`` are
        closed."""
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable and now - connection.idle_since < KEEPALIVE:
                return connection
            connection.close()
        return None

    async def _connect(self, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            if self.proxy is not None:
                return await tunnel.connect(_Connection, self.host, self.port, self._ssl,
                                            self.proxy, forward=self._forward,
                                            timeout=timeout)  # type: ignore[return-value]
            _, connection = await loop.create_connection(
                _Connection, self.host, self.port, ssl=self._ssl,
                server_hostname=self.host if self.tls else None)
        except tunnel.ProxyFailure:
            raise
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(f"{type(exc).__name__}: {exc}") from None
        return connection

    def _request_bytes(self, method: str, target: str, headers: dict[str, str],
                       body: bytes | None) -> bytes:
        if any("\r" in v or "\n" in v for v in (target, *headers.values())):
            raise ValueError("a line break inside a request line or header")  # no injection
        lines = [f"{method} {self._prefix}{target} HTTP/1.1", f"Host: {self._host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if self._forward and (credentials := self.proxy.authorization()):  # type: ignore
            lines.append(f"Proxy-Authorization: {credentials}")
        lines.append("Accept-Encoding: gzip, deflate")
        if body is not None or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body or b'')}")
        return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + (body or b"")
