"""A connection to a destination through a proxy, for the light pool (``wire.py``): once
made, its HTTP costs what a direct connection's does.

* an ``http://`` or ``https://`` proxy (TLS to the proxy) is asked to ``CONNECT`` to the
  destination, and TLS to the destination (for https) runs inside that tunnel; a plain
  http destination is instead spoken to through the proxy in the absolute form
  (``GET http://host/path``), as curl does and as proxies expect for port 80
  (``forward``);
* a ``socks5://`` proxy is given the destination's address (resolved here), a
  ``socks5h://`` one its name (the proxy resolves it); RFC 1928 and, with credentials,
  RFC 1929.

Every failure is a ``ProxyFailure`` saying which side failed: the proxy could not be
reached, it refused the credentials, or it could not reach the destination. The proxy is
named masked, never with its credentials.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import sys
from collections.abc import Callable

from ..errors import ArtingError, ProxyRefused, ProxyUnreachable, UpstreamUnreachable
from .proxies import Proxy

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # pragma: no cover - Python 3.10
    from async_timeout import timeout as _timeout

#: Seconds the proxy gets to connect and answer the handshake (and at most this share of
#: the request's time, so that a silent proxy is named as such).
HANDSHAKE_TIMEOUT, HANDSHAKE_SHARE = 10.0, 0.8
MAX_HEAD = 16 * 1024

_SOCKS_REPLIES = {1: "general failure", 2: "not allowed by its rules", 3: "network unreachable",
                  4: "host unreachable", 5: "connection refused", 6: "TTL expired",
                  7: "command not supported", 8: "address type not supported"}


class ProxyFailure(ConnectionError):
    """The proxy, not the destination, is why no connection was made."""

    #: ``unreachable``: no connection to the proxy; ``refused``: it refused (or wanted)
    #: credentials; ``destination``: it could not (or would not) reach the destination.
    kind: str

    def __init__(self, proxy: Proxy, kind: str, detail: str, destination: str = "") -> None:
        self.proxy, self.kind, self.detail = proxy, kind, detail
        if kind == "unreachable":
            message = f"could not reach the proxy {proxy} ({detail})"
        elif kind == "refused":
            message = f"the proxy {proxy} refused the credentials ({detail})" \
                if proxy.username or proxy.password else \
                f"the proxy {proxy} wants credentials ({detail}): put them in its URL"
        else:
            message = f"the proxy {proxy} could not reach {destination} ({detail})"
        super().__init__(message)
        self.message = message

    def as_error(self) -> ArtingError:
        """The daemon's error for it, naming where the proxy is set."""
        where = f"`{self.proxy.source}`" if " " not in self.proxy.source and \
            self.proxy.source.islower() else self.proxy.source
        said = self.message[0].upper() + self.message[1:]
        if self.kind == "unreachable":
            return ProxyUnreachable(f"{said}: is it running, and is {where} right? Nothing "
                                    "was sent upstream.")
        if self.kind == "refused":
            return ProxyRefused(f"{said}. Correct `user:password` in the proxy's URL "
                                f"({where}).")
        return UpstreamUnreachable(f"{said}.")


async def connect(factory: Callable[[], asyncio.Protocol], host: str, port: int,
                  tls: ssl.SSLContext | None, proxy: Proxy, *, forward: bool = False,
                  timeout: float = HANDSHAKE_TIMEOUT) -> asyncio.Protocol:
    """A connection to ``host:port`` through ``proxy`` with ``factory``'s protocol (TLS
    to the destination when ``tls``). ``forward``: connect to the proxy only (an http
    destination through an http(s) proxy)."""
    loop = asyncio.get_running_loop()
    destination = f"{host}:{port}"
    handshake = _Handshake(proxy, destination)
    to_proxy = _tls_to(proxy)
    limit = min(timeout * HANDSHAKE_SHARE, HANDSHAKE_TIMEOUT)
    try:
        async with _timeout(limit):
            try:
                transport, _ = await loop.create_connection(
                    lambda: handshake, proxy.host, proxy.port, ssl=to_proxy,
                    server_hostname=proxy.host if to_proxy else None)
            except (OSError, ssl.SSLError) as exc:
                raise ProxyFailure(proxy, "unreachable", _why(exc)) from None
            try:
                if proxy.socks:
                    await _socks5(handshake, proxy, host, port)
                elif not forward:
                    await _connect_method(handshake, proxy, host, port)
            except BaseException:
                transport.close()
                raise
    except TimeoutError:
        raise ProxyFailure(proxy, "unreachable", f"no answer within {limit:g} s") from None
    protocol = factory()
    if tls is not None and not forward:
        try:
            secured = await loop.start_tls(transport, handshake, tls, server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            transport.close()
            raise ConnectionRefusedError(f"TLS to {destination} through the proxy failed "
                                         f"({_why(exc)})") from None
        assert secured is not None      # typed optional; asyncio always returns one
        transport = secured
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    return protocol


def _tls_to(proxy: Proxy) -> ssl.SSLContext | None:
    if proxy.scheme != "https":
        return None
    from ..providers.arting.wire import tls_context     # the system's trust, read once
    return tls_context()


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not trusted: {exc.verify_message}; add its CA to " \
            "this machine's trust, or point SSL_CERT_FILE at it"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


class _Handshake(asyncio.Protocol):
    """Reads the proxy's handshake answers; nothing else is expected before it ends."""

    def __init__(self, proxy: Proxy, destination: str) -> None:
        self.proxy, self.destination = proxy, destination
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self._closed: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = _why(exc) if exc else "it closed the connection"
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def read(self, n: int, phase: str) -> bytes:
        """Exactly ``n`` bytes; the connection closing first is the proxy saying no in
        ``phase`` (``unreachable``, ``refused`` or ``destination``)."""
        while len(self._buffer) < n:
            await self._wait(phase)
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    async def head(self) -> bytes:
        """An HTTP answer's head (to the blank line)."""
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > MAX_HEAD:
                raise ProxyFailure(self.proxy, "destination", "an endless answer to CONNECT",
                                   self.destination)
            await self._wait("destination")
        end = self._buffer.index(b"\r\n\r\n") + 4
        out = bytes(self._buffer[:end])
        del self._buffer[:end]
        return out

    async def _wait(self, phase: str) -> None:
        if self._closed is not None:
            detail = self._closed
            if phase == "refused":
                detail = "it closed the connection when given them" \
                    if self.proxy.username or self.proxy.password else \
                    "it closed the connection when offered none"
            raise ProxyFailure(self.proxy, phase, detail, self.destination)
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter


async def _connect_method(hs: _Handshake, proxy: Proxy, host: str, port: int) -> None:
    """``CONNECT host:port``: 2xx opens the tunnel; 407 refuses the credentials."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if (credentials := proxy.authorization()) is not None:
        lines.append(f"Proxy-Authorization: {credentials}")
    hs.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    head = await hs.head()
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    parts = status_line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    said = f"HTTP {status}" + (f" {parts[2]}" if len(parts) > 2 and parts[2] else "")
    if 200 <= status < 300:
        return
    if status == 407:
        raise ProxyFailure(proxy, "refused", f"it answered {said}")
    if status == 0:
        raise ProxyFailure(proxy, "unreachable", f"not an HTTP proxy? It answered "
                           f"{status_line[:60]!r}")
    raise ProxyFailure(proxy, "destination", f"it answered {said}", authority)


async def _socks5(hs: _Handshake, proxy: Proxy, host: str, port: int) -> None:
    destination = f"{host}:{port}"
    login = proxy.username is not None or proxy.password is not None
    hs.write(b"\x05\x02\x00\x02" if login else b"\x05\x01\x00")
    version, method = await hs.read(2, "unreachable" if login else "refused")
    if version != 5:
        raise ProxyFailure(proxy, "unreachable", "not a SOCKS5 proxy")
    if method == 0xFF:
        raise ProxyFailure(proxy, "refused", "it accepts none of the ways offered to log in")
    if method == 0x02:
        if not login:
            raise ProxyFailure(proxy, "refused", "it asked for a user name and password")
        user = (proxy.username or "").encode()
        password = (proxy.password or "").encode()
        hs.write(bytes([1, len(user)]) + user + bytes([len(password)]) + password)
        _, status = await hs.read(2, "refused")
        if status != 0:
            raise ProxyFailure(proxy, "refused", "it answered that they are wrong")
    elif method != 0x00:
        raise ProxyFailure(proxy, "unreachable", f"it chose an unknown login method ({method})")
    hs.write(b"\x05\x01\x00" + await _socks_address(proxy, host, port) + port.to_bytes(2, "big"))
    _, reply, _, kind = await hs.read(4, "destination")
    if reply != 0:
        raise ProxyFailure(proxy, "destination", _SOCKS_REPLIES.get(reply, f"reply {reply}"),
                           destination)
    size = {1: 4, 4: 16}.get(kind) or (await hs.read(1, "destination"))[0]
    await hs.read(size + 2, "destination")     # the address the proxy bound: not needed


async def _socks_address(proxy: Proxy, host: str, port: int) -> bytes:
    """The destination as SOCKS5 writes it: socks5h sends the name, socks5 an address."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if proxy.scheme == "socks5h":
            name = host.encode("idna")
            return b"\x03" + bytes([len(name)]) + name
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                                 type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ProxyFailure(proxy, "destination", f"{host} does not resolve here "
                               f"({_why(exc)}); socks5h:// lets the proxy resolve it",
                               f"{host}:{port}") from None
        address = ipaddress.ip_address(infos[0][4][0])
    return (b"\x01" if address.version == 4 else b"\x04") + address.packed
